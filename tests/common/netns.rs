//! Network namespaces for the soak test (filled in with the soak test).
