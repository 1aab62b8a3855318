"""Real services the tests need, started and stopped by the tests themselves."""
