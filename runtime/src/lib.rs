//! The runtime pieces the operator and the checkpoint agent share (they never depend on each
//! other): [`s3`] — one way to build an S3 client and to say what an S3 failure was; [`serve`] —
//! the `/healthz` `/readyz` `/metrics` server; [`reach`] — whether an API server answers from here;
//! [`flagdoc`] — the flag reference generated from a clap definition; [`text`] — outside text
//! shown escaped.

pub mod flagdoc;
pub mod reach;
pub mod s3;
pub mod serve;
pub mod text;
