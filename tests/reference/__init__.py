"""Plain-NumPy reference implementations the tests compare against."""
