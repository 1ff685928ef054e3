"""DVC pipeline stages for product-review sentiment analysis, one module per stage."""
