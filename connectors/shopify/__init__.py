"""Shopify: the GraphQL Admin API client and the storefront adapter."""
