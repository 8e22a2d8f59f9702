//! Property tests of what the heartbeat endpoint reads from the network and from its tokens file:
//! whatever the bytes, parsing never panics and a refusal is one printable line.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

use super::*;

/// A string strategy for `pattern`, compiled once (a `&str` strategy compiles its regex anew for
/// every case, which dominates the run time in a debug build).
fn re(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).unwrap()
}

/// The Go agent's body (as in the HTTP integration test).
const GO_BODY: &str = r#"{"node":"worker-1","ip":"10.0.0.4","os":"linux","arch":"amd64","cpus":4,"cpu_usage_percent":12.5,
 "mem_total_bytes":8348520448,"mem_used_bytes":2147483648,"ts":"2025-09-08T14:20:56Z","cluster_name":"cluster1-azure",
 "cluster_namespace":"default","machine":"m1","owner_kind":"MachineSet","owner_name":"md-0","provided_node_ip":"10.0.0.4",
 "cri_socket":"unix:///run/containerd/containerd.sock"}"#;

const CLUSTER: &str = "cluster1-azure";

/// Every field a heartbeat may carry (nested ones too), and a few it may not.
const FIELDS: [&str; 32] = [
    "node",
    "ip",
    "os",
    "arch",
    "cpus",
    "cpu_usage_percent",
    "mem_total_bytes",
    "mem_used_bytes",
    "ts",
    "cluster_name",
    "cluster_namespace",
    "machine",
    "owner_kind",
    "owner_name",
    "provided_node_ip",
    "cri_socket",
    "agent_version",
    "last_upload",
    "restore",
    "reach",
    "cluster",
    "reachable",
    "error",
    "age_ms",
    "key",
    "bytes",
    "runtime",
    "restore_enabled",
    "kernel",
    "gpu",
    "",
    "\u{0}",
];

/// A refusal is one non-empty line of printable text.
fn assert_clear(msg: &str) -> Result<(), TestCaseError> {
    prop_assert!(!msg.is_empty(), "empty error message");
    prop_assert!(
        !msg.chars().any(char::is_control),
        "control character in {msg:?}"
    );
    Ok(())
}

/// Any JSON value: scalars of every type (odd strings and extreme numbers) and shallow nesting.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::from(1e300)),
        Just(Value::from(-0.0)),
        re(".{0,12}").prop_map(Value::String),
        re("[a-z0-9.-]{1,12}").prop_map(Value::String),
        Just(Value::from("2025-09-08T14:20:56Z")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((prop::sample::select(&FIELDS[..]), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
    .boxed()
}

/// One change to a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
    .boxed()
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Set(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            Mutation::Remove(i) => {
                bytes.remove(i.index(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
    bytes
}

/// Bodies: raw bytes, one byte too many, JSON-ish text, the Go body mutated byte-wise, and the
/// Go body with fields set to arbitrary values.
fn body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256),
        1 => Just(vec![b' '; MAX_HEARTBEAT_BYTES + 1]),
        1 => re(r#"[{}\[\]":,0-9a-z_\\ .eE+-]{0,160}"#).prop_map(String::into_bytes),
        2 => vec(mutation(), 1..6).prop_map(|m| mutate(GO_BODY.as_bytes().to_vec(), &m)),
        4 => vec((prop::sample::select(&FIELDS[..]), json_value()), 1..4).prop_map(|fields| {
            let mut v: Value = serde_json::from_str(GO_BODY).unwrap_or_default();
            for (k, value) in fields {
                v[k] = value;
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// What `POST /heartbeat` accepts has a valid node name and names the token's cluster (or
    /// none); what it refuses gets a status by kind and a printable message.
    #[test]
    fn arbitrary_heartbeat_bodies_never_panic_and_errors_are_printable(body in body()) {
        match accept_body(CLUSTER, &body) {
            Ok(hb) => {
                prop_assert!(!hb.node.is_empty() && hb.node.len() <= 253);
                prop_assert!(hb.cluster_name.is_empty() || hb.cluster_name == CLUSTER);
            }
            Err(e) => {
                let msg = e.to_string();
                assert_clear(&msg)?;
                prop_assert!(msg.starts_with("failed to "), "{msg}");
                // U+FFFD is what raw non-UTF-8 bytes become when a message quotes them.
                if msg.contains('\u{fffd}') {
                    let quoted = body.windows(3).any(|w| w == "\u{fffd}".as_bytes());
                    prop_assert!(quoted, "raw bytes echoed: {msg:?}");
                }
                prop_assert!(matches!(e.status().as_u16(), 400 | 413 | 422));
            }
        }
    }

    /// A tokens file line that cannot be used is named by its number and the reason; the token
    /// itself is never shown.
    #[test]
    fn arbitrary_tokens_files_never_panic_and_errors_name_the_line(
        text in prop_oneof![
            any::<String>(),
            re("([ \t#=a-z0-9_-]{0,30}(\n|\r\n|\r)){0,8}[ \t#=a-z0-9_-]{0,30}"),
            re("(([a-z0-9-]{0,12} ?= ?[\\x00-\\x7f]{0,24}|#.{0,8}|)\n){0,6}"),
        ],
    ) {
        match Tokens::parse(&text) {
            Ok(tokens) => {
                let shown = format!("{tokens:?}");
                prop_assert!(!shown.contains('='), "Debug prints no token: {shown}");
            }
            Err(e) => {
                let msg = e.to_string();
                assert_clear(&msg)?;
                prop_assert!(e.line >= 1 && e.line <= text.lines().count(), "{msg}");
                let prefix = format!("line {}: ", e.line);
                prop_assert!(msg.starts_with(&prefix), "{msg}");
                let bad = text.lines().nth(e.line - 1).unwrap_or_default();
                if let Some((_, token)) = bad.split_once('=') {
                    let token = token.trim();
                    prop_assert!(token.len() < 8 || !msg.contains(token), "{msg}");
                }
            }
        }
    }
}
