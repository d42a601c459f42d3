"""The scale benchmark: the product at 10^4-10^6 documents (`make bench-scale-cache`, `make bench-scale`)."""
