"""Supplier adapters: one interface (``base.SupplierOrders``), one module per supplier API."""
