//! berth-registry: the OCI distribution server (being written).
