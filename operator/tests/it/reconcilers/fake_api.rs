//! An in-process stand-in for kube-apiserver, one per scenario (controller-rs style): a tower
//! service behind a real `kube::Client` that keeps objects in memory, answers GET/LIST (with
//! equality label selectors), POST, merge and apply PATCH (status subresource included),
//! honours `metadata.resourceVersion` preconditions with 409, and records every request so a
//! test can assert what the reconciler asked for. Paths it does not know can be answered by
//! per-scenario routes (e.g. the kubelet's node-proxy checkpoint call).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub content_type: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

/// A scenario's answer for a request the store does not handle: `(status, body)`.
pub type Route = Arc<dyn Fn(&Seen) -> Option<(u16, Value)> + Send + Sync>;

#[derive(Default)]
struct State {
    /// Object path (`/api/v1/namespaces/ns/pods/p`) → object.
    objects: BTreeMap<String, Value>,
    /// (object path + subresource, field manager) → the top-level fields it last applied, so a
    /// field a manager stops applying is removed (server-side apply semantics, one level deep).
    applied: BTreeMap<(String, String), Vec<String>>,
    seen: Vec<Seen>,
    version: u64,
}

/// The fake API server.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    routes: Arc<Mutex<Vec<Route>>>,
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
               "reason": reason, "message": message}),
    )
}

fn matches_selector(obj: &Value, query: &str) -> bool {
    let Some(sel) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("labelSelector="))
    else {
        return true;
    };
    let sel = urlencoding_decode(sel);
    sel.split(',').filter(|s| !s.is_empty()).all(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// A `kube::Client` talking to this fake.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.answer(req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Answers requests no stored object matches.
    pub fn route(&self, route: impl Fn(&Seen) -> Option<(u16, Value)> + Send + Sync + 'static) {
        self.routes.lock().unwrap().push(Arc::new(route));
    }

    /// Stores `obj` at its path (derived from apiVersion, kind's plural and metadata).
    pub fn put(&self, plural: &str, obj: Value) {
        let path = object_path(&obj, plural);
        let mut s = self.state.lock().unwrap();
        s.version += 1;
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
        obj["metadata"]["uid"] = json!(format!("uid-{}", s.version));
        if obj["metadata"]["generation"].is_null() {
            obj["metadata"]["generation"] = json!(1);
        }
        s.objects.insert(path, obj);
    }

    /// The stored object at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Replaces the stored object at `path` (e.g. to roll a status back, as a crash would).
    pub fn set(&self, path: &str, obj: Value) {
        self.state
            .lock()
            .unwrap()
            .objects
            .insert(path.to_owned(), obj);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests with `method` whose path contains `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.contains(needle))
            .count()
    }

    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().to_string();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let bytes = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let seen = Seen {
            method,
            content_type,
            path,
            query,
            body,
        };
        self.state.lock().unwrap().seen.push(seen.clone());
        let routed = self.routes.lock().unwrap().iter().find_map(|r| r(&seen));
        let (code, value) = routed.unwrap_or_else(|| self.store(&seen));
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&value).unwrap()))
            .unwrap()
    }

    fn store(&self, r: &Seen) -> (u16, Value) {
        let mut s = self.state.lock().unwrap();
        let (path, sub) = match r.path.strip_suffix("/status") {
            Some(p) => (p.to_owned(), true),
            None => (r.path.clone(), false),
        };
        match r.method.as_str() {
            "GET" => {
                if let Some(o) = s.objects.get(&path) {
                    return (200, o.clone());
                }
                let prefix = format!("{path}/");
                let items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|(k, _)| {
                        k.starts_with(&prefix) && !k[prefix.len()..].contains('/')
                            || list_all_namespaces(&path, k)
                    })
                    .map(|(_, v)| v.clone())
                    .filter(|v| matches_selector(v, &r.query))
                    .collect();
                if items.is_empty() && !looks_like_collection(&path) {
                    return status(404, "NotFound", &format!("{path} not found"));
                }
                (
                    200,
                    json!({"kind": "List", "apiVersion": "v1",
                           "metadata": {"resourceVersion": s.version.to_string()}, "items": items}),
                )
            }
            "POST" => {
                let mut obj = r.body.clone();
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or("generated")
                    .to_owned();
                let key = format!("{path}/{name}");
                if s.objects.contains_key(&key) {
                    return status(409, "AlreadyExists", &format!("{key} already exists"));
                }
                s.version += 1;
                obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
                obj["metadata"]["uid"] = json!(format!("uid-{}", s.version));
                s.objects.insert(key, obj.clone());
                (201, obj)
            }
            "PATCH" => {
                let Some(mut obj) = s.objects.remove(&path) else {
                    return status(404, "NotFound", &format!("{path} not found"));
                };
                if let Some(want) = r.body["metadata"]["resourceVersion"].as_str()
                    && obj["metadata"]["resourceVersion"].as_str() != Some(want)
                {
                    s.objects.insert(path, obj);
                    return status(409, "Conflict", "the object has been modified");
                }
                let mut patch = r.body.clone();
                if let Some(p) = patch.as_object_mut() {
                    p.remove("apiVersion");
                    p.remove("kind");
                    if sub {
                        p.retain(|k, _| k == "status");
                    } else {
                        p.remove("status");
                    }
                }
                if r.content_type.contains("apply-patch") {
                    let manager = r
                        .query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("fieldManager="))
                        .unwrap_or_default()
                        .to_owned();
                    let section = if sub { "status" } else { "spec" };
                    let now: Vec<String> = patch[section]
                        .as_object()
                        .map(|o| o.keys().cloned().collect())
                        .unwrap_or_default();
                    let key = (format!("{path}/{section}"), manager);
                    let before = s.applied.insert(key, now.clone()).unwrap_or_default();
                    if let Some(fields) = obj[section].as_object_mut() {
                        for gone in before.iter().filter(|f| !now.contains(f)) {
                            fields.remove(gone);
                        }
                    }
                }
                merge(&mut obj, &patch);
                s.version += 1;
                obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.objects.insert(path, obj.clone());
                (200, obj)
            }
            "DELETE" => match s.objects.remove(&path) {
                Some(o) => (200, o),
                None => status(404, "NotFound", &format!("{path} not found")),
            },
            _ => status(405, "MethodNotAllowed", "not supported by the fake"),
        }
    }
}

/// `/apis/g/v/kinds` (all namespaces) matches `/apis/g/v/namespaces/ns/kinds/name`.
fn list_all_namespaces(path: &str, key: &str) -> bool {
    let Some((base, plural)) = path.rsplit_once('/') else {
        return false;
    };
    if base.ends_with("/namespaces") || base.contains("/namespaces/") {
        return false;
    }
    key.strip_prefix(&format!("{base}/namespaces/"))
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, tail)| {
            tail.split_once('/')
                .is_some_and(|(p, name)| p == plural && !name.contains('/'))
        })
}

fn looks_like_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/<plural>, /api/v1/namespaces/ns/<plural>, /apis/g/v/<plural>, /apis/g/v/namespaces/ns/<plural>
    let n = segments.len();
    let core = segments.first() == Some(&"api");
    let base = if core { 2 } else { 3 };
    n == base + 1 || (n == base + 3 && segments.get(base) == Some(&"namespaces"))
}

/// The path of `obj` under `plural`.
pub fn object_path(obj: &Value, plural: &str) -> String {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}/{name}"),
        None => format!("{prefix}/{plural}/{name}"),
    }
}
