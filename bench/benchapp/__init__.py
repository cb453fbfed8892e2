"""The product table every benchmarked tool syncs into."""
