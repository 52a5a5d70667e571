//! Benchmarks come with the benchmark issue.
