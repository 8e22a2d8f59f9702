//! checkpoint-agent: runs on every source worker. This first version sends heartbeats (the Go
//! agent's payload plus our agent version) with a bearer token read from a file; archive upload to
//! S3 is built in the agent issue.

pub mod config;
pub mod heartbeat;
