//! A mocked Kubernetes API server that keeps the objects it is given (tower-test under kube's
//! client), and a real mailstore on PostgreSQL behind the operator's Admin API clients.
//!
//! The API server answers what the reconcilers ask — get, list, server-side apply (objects
//! merged, the status subresource apart), JSON patches of finalizers, delete with finalizers,
//! Events — so a test sets up objects, reconciles, and looks at the objects that result.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use kubemail_operator::context::Context;
use kubemail_operator::mailstore::Mailstores;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The objects the fake API server holds, by their path.
#[derive(Clone, Default)]
pub struct FakeApi {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    requests: Arc<Mutex<Vec<String>>>,
    /// The permissions the requests needed: API group, resource (with a subresource), verb.
    permissions: Arc<Mutex<Vec<(String, String, String)>>>,
    /// The bodies of server-side applies, by path.
    applies: Arc<Mutex<Vec<(String, Value)>>>,
    /// Whether cert-manager's Certificate resource exists.
    pub cert_manager: Arc<Mutex<bool>>,
    next_version: Arc<Mutex<u64>>,
}

fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('x') || lower.ends_with('s') { format!("{lower}es") } else { format!("{lower}s") }
}

/// `/api/v1/namespaces/ns/secrets/name` and the like.
pub fn path_of(api_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    let base = if api_version.contains('/') { format!("/apis/{api_version}") } else { format!("/api/{api_version}") };
    format!("{base}/namespaces/{namespace}/{}/{name}", plural(kind))
}

fn path_of_value(object: &Value) -> String {
    path_of(
        object["apiVersion"].as_str().unwrap(),
        object["kind"].as_str().unwrap(),
        object["metadata"]["namespace"].as_str().unwrap(),
        object["metadata"]["name"].as_str().unwrap(),
    )
}

/// Objects merged as server-side apply merges what one manager owns: maps key by key, lists
/// and values replaced.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// `/api/v1/namespaces/ns/secrets` rather than `/api/v1/namespaces/ns/secrets/name`.
fn is_collection(path: &str) -> bool {
    let parts = path.split('/').count();
    if path.starts_with("/api/") { parts == 6 } else { parts == 7 }
}

fn status_response(code: StatusCode, message: &str) -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
        "reason": if code == StatusCode::NOT_FOUND { "NotFound" } else { "Invalid" }, "code": code.as_u16()});
    Response::builder().status(code).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap()
}

fn ok(value: &Value) -> Response<Body> {
    Response::builder().status(StatusCode::OK).body(Body::from(serde_json::to_vec(value).unwrap())).unwrap()
}

impl FakeApi {
    /// A client of a new fake API server.
    pub fn start() -> (Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = FakeApi::default();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().clone();
                let uri = request.uri().clone();
                let body = request.into_body().collect_bytes().await.unwrap();
                send.send_response(server.answer(&method, uri.path(), uri.query().unwrap_or(""), &body));
            }
        });
        (Client::new(service, "default"), fake)
    }

    /// A reconcile context on this server, with mailstores at `mailstore`.
    pub fn context(client: Client, mailstore: &str) -> Arc<Context> {
        Arc::new(Context::new(client, Mailstores::new(Some(mailstore.to_string())), "1.2.3".into(), None))
    }

    fn answer(&self, method: &Method, path: &str, query: &str, body: &[u8]) -> Response<Body> {
        self.requests.lock().unwrap().push(format!("{method} {path}"));
        if path.starts_with("/apis/cert-manager.io") && !*self.cert_manager.lock().unwrap() {
            return status_response(StatusCode::NOT_FOUND, "the server could not find the requested resource");
        }
        let (path, status) = match path.strip_suffix("/status") {
            Some(path) => (path.to_string(), true),
            None => (path.to_string(), false),
        };
        let mut objects = self.objects.lock().unwrap();
        self.record_permission(method, &path, status, query, objects.contains_key(&path));
        match *method {
            Method::GET if is_collection(&path) => {
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|(key, _)| key.rsplit_once('/').is_some_and(|(parent, _)| parent == path))
                    .map(|(_, value)| value.clone())
                    .collect();
                ok(&json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}))
            }
            Method::GET => match objects.get(&path) {
                Some(object) => ok(object),
                None => status_response(StatusCode::NOT_FOUND, &format!("{path} not found")),
            },
            Method::PATCH if query.contains("fieldManager") && !body.starts_with(b"[") => {
                // Server-side apply.
                let applied: Value = serde_json::from_slice(body).unwrap();
                self.applies.lock().unwrap().push((path.clone(), applied.clone()));
                let exists = objects.contains_key(&path);
                if status && !exists {
                    return status_response(StatusCode::NOT_FOUND, &format!("{path} not found"));
                }
                let version = self.version();
                let object = objects.entry(path.clone()).or_insert_with(|| {
                    json!({"metadata": {"uid": format!("uid-{version}"), "creationTimestamp": "2026-01-01T00:00:00Z"}})
                });
                if status {
                    merge(&mut object["status"], &applied["status"]);
                } else {
                    let kept_status = object.get("status").cloned();
                    merge(object, &applied);
                    if let Some(kept) = kept_status {
                        object["status"] = kept;
                    }
                }
                object["metadata"]["resourceVersion"] = json!(version.to_string());
                if !status && object["metadata"].get("generation").is_none() {
                    object["metadata"]["generation"] = json!(1);
                }
                ok(object)
            }
            Method::PATCH if body.starts_with(b"{") => {
                // A merge patch (an Event's series).
                let Some(object) = objects.get_mut(&path) else {
                    return status_response(StatusCode::NOT_FOUND, &format!("{path} not found"));
                };
                merge(object, &serde_json::from_slice(body).unwrap());
                ok(object)
            }
            Method::PATCH => {
                // A JSON patch (finalizers).
                let Some(object) = objects.get_mut(&path) else {
                    return status_response(StatusCode::NOT_FOUND, &format!("{path} not found"));
                };
                let patch: json_patch::Patch = serde_json::from_slice(body).unwrap();
                // As the API server's patcher does, a test of an absent field against null holds.
                if object["metadata"].get("finalizers").is_none() {
                    object["metadata"]["finalizers"] = Value::Null;
                }
                if json_patch::patch(object, &patch).is_err() {
                    return status_response(StatusCode::UNPROCESSABLE_ENTITY, "the patch's test failed");
                }
                object["metadata"]["resourceVersion"] = json!(self.version().to_string());
                let object = object.clone();
                let finalizers_left = object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
                if object["metadata"].get("deletionTimestamp").is_some() && !finalizers_left {
                    objects.remove(&path);
                }
                ok(&object)
            }
            Method::POST => {
                let mut object: Value = serde_json::from_slice(body).unwrap();
                let name = object["metadata"]["name"].as_str().map(str::to_string).unwrap_or_else(|| {
                    format!("{}{}", object["metadata"]["generateName"].as_str().unwrap_or("object-"), self.version())
                });
                object["metadata"]["name"] = json!(name);
                objects.insert(format!("{path}/{name}"), object.clone());
                Response::builder()
                    .status(StatusCode::CREATED)
                    .body(Body::from(serde_json::to_vec(&object).unwrap()))
                    .unwrap()
            }
            Method::DELETE => match objects.get_mut(&path) {
                None => status_response(StatusCode::NOT_FOUND, &format!("{path} not found")),
                Some(object) if object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) => {
                    object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                    ok(object)
                }
                Some(_) => {
                    let object = objects.remove(&path).unwrap();
                    ok(&object)
                }
            },
            _ => status_response(StatusCode::METHOD_NOT_ALLOWED, "not supported by the fake API server"),
        }
    }

    /// The RBAC verb `method` on `path` needs; a server-side apply that creates needs `create`.
    fn record_permission(&self, method: &Method, path: &str, status: bool, query: &str, exists: bool) {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, rest) = match parts[0] {
            "api" => ("", &parts[2..]),
            _ => (parts[1], &parts[3..]),
        };
        // namespaces/{namespace}/{resource}[/{name}]
        let resource = if status { format!("{}/status", rest[2]) } else { rest[2].to_string() };
        let named = rest.len() > 3;
        let mut verbs = match *method {
            Method::GET if named => vec!["get"],
            Method::GET => vec!["list"],
            Method::POST => vec!["create"],
            Method::DELETE => vec!["delete"],
            _ => vec!["patch"],
        };
        if *method == Method::PATCH && query.contains("fieldManager") && !exists {
            verbs.push("create");
        }
        let mut permissions = self.permissions.lock().unwrap();
        for verb in verbs {
            permissions.push((group.to_string(), resource.clone(), verb.to_string()));
        }
    }

    /// The permissions the requests so far needed, as `group/resource verb`, none twice.
    pub fn permissions(&self) -> std::collections::BTreeSet<(String, String, String)> {
        self.permissions.lock().unwrap().iter().cloned().collect()
    }

    fn version(&self) -> u64 {
        let mut next = self.next_version.lock().unwrap();
        *next += 1;
        *next
    }

    /// Stores `object` as a user's `kubectl apply` would (a new resourceVersion each time).
    pub fn put(&self, object: &impl Serialize) {
        let mut value = serde_json::to_value(object).unwrap();
        let path = path_of_value(&value);
        let mut objects = self.objects.lock().unwrap();
        let version = self.version();
        if let Some(existing) = objects.get(&path) {
            // What the user does not send is kept: status, finalizers, uid.
            for kept in ["status"] {
                if let Some(v) = existing.get(kept) {
                    value[kept] = v.clone();
                }
            }
            for kept in ["finalizers", "uid", "creationTimestamp", "deletionTimestamp"] {
                if let Some(v) = existing["metadata"].get(kept) {
                    value["metadata"][kept] = v.clone();
                }
            }
            let generation = existing["metadata"]["generation"].as_i64().unwrap_or(1);
            value["metadata"]["generation"] = json!(generation + 1);
        } else {
            value["metadata"]["uid"] = json!(format!("uid-{version}"));
            value["metadata"]["generation"] = json!(1);
        }
        value["metadata"]["resourceVersion"] = json!(version.to_string());
        objects.insert(path, value);
    }

    /// Sets what a controller other than the operator writes (a Deployment's or a
    /// Certificate's status).
    pub fn set_status(&self, path: &str, status: Value) {
        let mut objects = self.objects.lock().unwrap();
        objects.get_mut(path).unwrap_or_else(|| panic!("{path} does not exist"))["status"] = status;
    }

    /// Deletes as `kubectl delete` does.
    pub fn delete(&self, path: &str) {
        let mut objects = self.objects.lock().unwrap();
        let object = objects.get_mut(path).unwrap_or_else(|| panic!("{path} does not exist"));
        if object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
            object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        } else {
            objects.remove(path);
        }
    }

    pub fn get<K: DeserializeOwned>(&self, path: &str) -> Option<K> {
        self.objects.lock().unwrap().get(path).map(|value| serde_json::from_value(value.clone()).unwrap())
    }

    pub fn value(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    /// Every path held under `prefix`.
    pub fn paths(&self, prefix: &str) -> Vec<String> {
        self.objects.lock().unwrap().keys().filter(|key| key.starts_with(prefix)).cloned().collect()
    }

    /// The Events recorded, as `reason: note`.
    pub fn events(&self) -> Vec<String> {
        self.objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(key, _)| key.contains("/events/"))
            .map(|(_, event)| {
                format!("{}: {}", event["reason"].as_str().unwrap_or(""), event["note"].as_str().unwrap_or(""))
            })
            .collect()
    }

    /// What was last applied to `path` (not its status).
    pub fn last_applied(&self, path: &str) -> Option<Value> {
        self.applies.lock().unwrap().iter().rev().find(|(p, _)| p == path).map(|(_, body)| body.clone())
    }

    /// The requests made so far, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The path of a typed object.
pub fn path<K: Resource<DynamicType = ()>>(object: &K) -> String {
    path_of(&K::api_version(&()), &K::kind(&()), &object.namespace().unwrap(), &object.name_any())
}

/// Runs `reconcile` on the object at `path` as the controller would: again while it asks to
/// be woken by its own change (adding the finalizer does), at most a few times.
pub async fn reconcile<K, F>(
    fake: &FakeApi,
    path: &str,
    ctx: &Arc<Context>,
    reconcile: impl Fn(Arc<K>, Arc<Context>) -> F,
) -> Result<Action, kubemail_operator::Error>
where
    K: DeserializeOwned + ResourceExt,
    F: Future<Output = Result<Action, kubemail_operator::Error>>,
{
    for _ in 0..3 {
        let Some(object) = fake.get::<K>(path) else { return Ok(Action::await_change()) };
        let had_finalizers = object.finalizers().to_vec();
        let action = reconcile(Arc::new(object), ctx.clone()).await?;
        let now: Option<K> = fake.get(path);
        // The finalizer was added (or removed): the watch would wake the reconcile again.
        if now.as_ref().map(|o| o.finalizers().to_vec()) != Some(had_finalizers) && now.is_some() {
            continue;
        }
        return Ok(action);
    }
    panic!("{path} kept changing its finalizers");
}
pub mod schema;
