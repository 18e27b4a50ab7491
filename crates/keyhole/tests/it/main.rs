//! Keyhole's integration tests: one binary, a module per feature. Every test talks to a real server
//! over real HTTP — either `keyhole_server::app` served in-process on a loopback port (when the test
//! also inspects storage directly) or the real `keyhole` binary as a child process.

mod support;

mod access_keys;
mod authorization;
mod autofill_isolation;
mod backup;
mod bounded_memory;
mod browser;
mod cluster_scripts;
mod config;
mod console;
mod console_tenants;
mod datasets;
mod deletes;
mod discovery;
mod durability;
mod email_extraction;
mod embed_tokens;
mod embedding;
mod enrichment;
mod first_run;
mod fuzz_http;
mod hostile_http;
mod hostile_queries;
mod hostile_writes;
mod inspection;
mod isolation;
mod keen_analysis;
mod key_extensions;
mod operability;
mod organization;
mod origins;
mod outage_proxy;
mod outages;
mod queries;
mod reference;
mod retries;
mod saved_queries;
mod scale_out;
mod sdk;
mod storage_faults;
mod stored_files;
mod tenant_cli;
mod tenant_offboarding;
mod tenants;
mod type_drift;
mod untrusted_writes;
mod webhooks;
mod write_api;
