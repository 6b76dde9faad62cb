"""Test kits of the feeds: generators of their real formats and local servers."""
