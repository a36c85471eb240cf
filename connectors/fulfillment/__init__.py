"""The supplier order executor: orders.commands -> supplier APIs -> orders.events, exactly once at the supplier."""
