//! A mocked Kubernetes API server that keeps the objects it is given (tower-test under kube's
//! client), and a real mailstore on PostgreSQL behind the operator's Admin API clients.
//!
//! The API server answers what the operator asks — get, list and watch (in a namespace or in
//! all, with equality label selectors), server-side apply (objects merged, the status
//! subresource apart), JSON and merge patches, delete with finalizers, Events — so a test sets
//! up objects, reconciles (or runs the controllers), and looks at the objects that result.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use kubemail_operator::context::Context;
use kubemail_operator::mailstore::Mailstores;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A watch request's collection, and where its events go.
type Watch = (Collection, mpsc::UnboundedSender<Bytes>);

/// What the fake answers with: a whole body, or a stream of watch events.
type Answer = Response<BoxBody<Bytes, std::convert::Infallible>>;

/// The objects the fake API server holds, by their path.
#[derive(Clone, Default)]
pub struct FakeApi {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    requests: Arc<Mutex<Vec<String>>>,
    /// The permissions the requests needed: API group, resource (with a subresource), verb.
    permissions: Arc<Mutex<Vec<(String, String, String)>>>,
    /// The bodies of server-side applies, by path.
    applies: Arc<Mutex<Vec<(String, Value)>>>,
    watches: Arc<Mutex<Vec<Watch>>>,
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

/// A request's path taken apart: `/api/v1` or `/apis/group/version`, then an optional
/// namespace, the resource, an optional name and subresource.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    base: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Target> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let base_len = if parts.first() == Some(&"api") { 2 } else { 3 };
        if parts.len() <= base_len {
            return None;
        }
        let base = format!("/{}", parts[..base_len].join("/"));
        let mut rest = &parts[base_len..];
        let namespace = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
            let namespace = rest[1].to_string();
            rest = &rest[2..];
            Some(namespace)
        } else {
            None
        };
        Some(Target {
            base,
            namespace,
            resource: rest[0].to_string(),
            name: rest.get(1).map(|s| s.to_string()),
            subresource: rest.get(2).map(|s| s.to_string()),
        })
    }

    fn object_path(&self) -> String {
        format!(
            "{}/namespaces/{}/{}/{}",
            self.base,
            self.namespace.as_deref().unwrap_or_default(),
            self.resource,
            self.name.as_deref().unwrap_or_default()
        )
    }

    fn group(&self) -> &str {
        self.base.strip_prefix("/apis/").map_or("", |gv| gv.split('/').next().unwrap_or(""))
    }
}

/// The objects a list or watch covers: one resource, in one namespace or all, with labels.
#[derive(Clone, Debug)]
struct Collection {
    base: String,
    namespace: Option<String>,
    resource: String,
    labels: Vec<(String, String)>,
}

impl Collection {
    fn new(target: &Target, query: &str) -> Collection {
        let selector = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("labelSelector="))
            .map(|s| s.replace("%3D", "=").replace("%2F", "/").replace("%2C", ","))
            .unwrap_or_default();
        let labels = selector
            .split(',')
            .filter_map(|term| term.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Collection {
            base: target.base.clone(),
            namespace: target.namespace.clone(),
            resource: target.resource.clone(),
            labels,
        }
    }

    fn covers(&self, path: &str, object: &Value) -> bool {
        let Some(target) = Target::parse(path) else { return false };
        target.base == self.base
            && target.resource == self.resource
            && (self.namespace.is_none() || self.namespace == target.namespace)
            && self.labels.iter().all(|(key, value)| object["metadata"]["labels"][key] == value.as_str())
    }
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

fn full(code: StatusCode, value: &Value) -> Answer {
    let body = http_body_util::Full::new(Bytes::from(serde_json::to_vec(value).unwrap()));
    Response::builder().status(code).body(body.map_err(|never| match never {}).boxed()).unwrap()
}

fn failure(code: StatusCode, message: &str) -> Answer {
    let reason = if code == StatusCode::NOT_FOUND { "NotFound" } else { "Invalid" };
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
        "reason": reason, "code": code.as_u16()});
    full(code, &status)
}

fn ok(value: &Value) -> Answer {
    full(StatusCode::OK, value)
}

fn not_found(path: &str) -> Answer {
    failure(StatusCode::NOT_FOUND, &format!("{path} not found"))
}

impl FakeApi {
    /// A client of a new fake API server.
    pub fn start() -> (Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Answer>();
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

    fn answer(&self, method: &Method, path: &str, query: &str, body: &[u8]) -> Answer {
        self.requests.lock().unwrap().push(format!("{method} {path}"));
        if path.starts_with("/apis/cert-manager.io") && !*self.cert_manager.lock().unwrap() {
            return failure(StatusCode::NOT_FOUND, "the server could not find the requested resource");
        }
        let Some(target) = Target::parse(path) else { return not_found(path) };
        let status = target.subresource.as_deref() == Some("status");
        let object_path = target.object_path();
        let mut objects = self.objects.lock().unwrap();
        self.record_permission(method, &target, query, objects.contains_key(&object_path));
        match (method.clone(), &target.name) {
            (Method::GET, None) if query.contains("watch=true") => {
                let (sender, events) = mpsc::unbounded_channel();
                self.watches.lock().unwrap().push((Collection::new(&target, query), sender));
                let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(events);
                let body = http_body_util::StreamBody::new(futures::StreamExt::map(stream, |line| {
                    Ok::<_, std::convert::Infallible>(Frame::data(line))
                }));
                Response::builder().status(StatusCode::OK).body(body.boxed()).unwrap()
            }
            (Method::GET, None) => {
                let collection = Collection::new(&target, query);
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|(key, value)| collection.covers(key, value))
                    .map(|(_, value)| value.clone())
                    .collect();
                let version = self.next_version.lock().unwrap().to_string();
                ok(
                    &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": version}, "items": items}),
                )
            }
            (Method::GET, Some(_)) => match objects.get(&object_path) {
                Some(object) => ok(object),
                None => not_found(&object_path),
            },
            (Method::PATCH, Some(_)) if query.contains("fieldManager") && body.starts_with(b"{") => {
                // Server-side apply.
                let applied: Value = serde_json::from_slice(body).unwrap();
                self.applies.lock().unwrap().push((object_path.clone(), applied.clone()));
                let existing = objects.get(&object_path).cloned();
                if status && existing.is_none() {
                    return not_found(&object_path);
                }
                let mut object = existing.unwrap_or_else(|| {
                    json!({"metadata": {"uid": format!("uid-{}", self.version()), "creationTimestamp": "2026-01-01T00:00:00Z"}})
                });
                if status {
                    merge(&mut object["status"], &applied["status"]);
                } else {
                    let kept_status = object.get("status").cloned();
                    merge(&mut object, &applied);
                    if let Some(kept) = kept_status {
                        object["status"] = kept;
                    }
                    if object["metadata"].get("generation").is_none() {
                        object["metadata"]["generation"] = json!(1);
                    }
                }
                ok(&self.store(&mut objects, &object_path, object))
            }
            (Method::PATCH, Some(_)) if body.starts_with(b"{") => {
                // A merge patch (an Event's series).
                let Some(mut object) = objects.get(&object_path).cloned() else { return not_found(&object_path) };
                merge(&mut object, &serde_json::from_slice(body).unwrap());
                ok(&self.store(&mut objects, &object_path, object))
            }
            (Method::PATCH, Some(_)) => {
                // A JSON patch (finalizers).
                let Some(mut object) = objects.get(&object_path).cloned() else { return not_found(&object_path) };
                let patch: json_patch::Patch = serde_json::from_slice(body).unwrap();
                // As the API server's patcher does, a test of an absent field against null holds.
                if object["metadata"].get("finalizers").is_none() {
                    object["metadata"]["finalizers"] = Value::Null;
                }
                if json_patch::patch(&mut object, &patch).is_err() {
                    return failure(StatusCode::UNPROCESSABLE_ENTITY, "the patch's test failed");
                }
                ok(&self.store(&mut objects, &object_path, object))
            }
            (Method::POST, None) => {
                let mut object: Value = serde_json::from_slice(body).unwrap();
                let name = object["metadata"]["name"].as_str().map(str::to_string).unwrap_or_else(|| {
                    format!("{}{}", object["metadata"]["generateName"].as_str().unwrap_or("object-"), self.version())
                });
                object["metadata"]["name"] = json!(name);
                let mut created = target.clone();
                created.name = Some(name);
                let object = self.store(&mut objects, &created.object_path(), object);
                full(StatusCode::CREATED, &object)
            }
            (Method::DELETE, Some(_)) => match self.delete_locked(&mut objects, &object_path) {
                Some(object) => ok(&object),
                None => not_found(&object_path),
            },
            _ => failure(StatusCode::METHOD_NOT_ALLOWED, "not supported by the fake API server"),
        }
    }

    /// Stores `object` at `path` with a new resourceVersion, and tells the watches; an object
    /// being deleted whose last finalizer went is removed instead.
    fn store(&self, objects: &mut BTreeMap<String, Value>, path: &str, mut object: Value) -> Value {
        object["metadata"]["resourceVersion"] = json!(self.version().to_string());
        let finalizers_left = object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if object["metadata"].get("deletionTimestamp").is_some() && !finalizers_left {
            objects.remove(path);
            self.notify("DELETED", path, &object);
            return object;
        }
        let kind = if objects.contains_key(path) { "MODIFIED" } else { "ADDED" };
        objects.insert(path.to_string(), object.clone());
        self.notify(kind, path, &object);
        object
    }

    /// Deletes as the API server does: marked while finalizers remain, else removed.
    fn delete_locked(&self, objects: &mut BTreeMap<String, Value>, path: &str) -> Option<Value> {
        let mut object = objects.get(path)?.clone();
        if object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
            object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            Some(self.store(objects, path, object))
        } else {
            objects.remove(path);
            self.notify("DELETED", path, &object);
            Some(object)
        }
    }

    fn notify(&self, kind: &str, path: &str, object: &Value) {
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
        line.push(b'\n');
        let line = Bytes::from(line);
        self.watches
            .lock()
            .unwrap()
            .retain(|(collection, sender)| !collection.covers(path, object) || sender.send(line.clone()).is_ok());
    }

    /// The RBAC verb `method` on `target` needs; a server-side apply that creates needs `create`.
    fn record_permission(&self, method: &Method, target: &Target, query: &str, exists: bool) {
        let resource = match &target.subresource {
            Some(sub) => format!("{}/{sub}", target.resource),
            None => target.resource.clone(),
        };
        let mut verbs = match (method.clone(), &target.name) {
            (Method::GET, None) if query.contains("watch=true") => vec!["watch"],
            (Method::GET, None) => vec!["list"],
            (Method::GET, Some(_)) => vec!["get"],
            (Method::POST, _) => vec!["create"],
            (Method::DELETE, _) => vec!["delete"],
            _ => vec!["patch"],
        };
        if *method == Method::PATCH && query.contains("fieldManager") && !exists {
            verbs.push("create");
        }
        let mut permissions = self.permissions.lock().unwrap();
        for verb in verbs {
            permissions.push((target.group().to_string(), resource.clone(), verb.to_string()));
        }
    }

    /// The permissions the requests so far needed, as (group, resource, verb), none twice.
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
        if let Some(existing) = objects.get(&path) {
            // What the user does not send is kept: status, finalizers, uid.
            if let Some(status) = existing.get("status") {
                value["status"] = status.clone();
            }
            for kept in ["finalizers", "uid", "creationTimestamp", "deletionTimestamp"] {
                if let Some(v) = existing["metadata"].get(kept) {
                    value["metadata"][kept] = v.clone();
                }
            }
            let generation = existing["metadata"]["generation"].as_i64().unwrap_or(1);
            value["metadata"]["generation"] = json!(generation + 1);
        } else {
            value["metadata"]["uid"] = json!(format!("uid-{}", self.version()));
            value["metadata"]["generation"] = json!(1);
        }
        self.store(&mut objects, &path, value);
    }

    /// Sets what a controller other than the operator writes (a Deployment's or a
    /// Certificate's status).
    pub fn set_status(&self, path: &str, status: Value) {
        let mut objects = self.objects.lock().unwrap();
        let mut object = objects.get(path).cloned().unwrap_or_else(|| panic!("{path} does not exist"));
        object["status"] = status;
        self.store(&mut objects, path, object);
    }

    /// Deletes as `kubectl delete` does.
    pub fn delete(&self, path: &str) {
        let mut objects = self.objects.lock().unwrap();
        self.delete_locked(&mut objects, path).unwrap_or_else(|| panic!("{path} does not exist"));
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
