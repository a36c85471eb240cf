"""The storefront push process (``ops-engine storefront``) and the storefront port."""
