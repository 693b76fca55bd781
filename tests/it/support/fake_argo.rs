//! A fake Kubernetes API server holding Argo `Workflow` objects ([`FakeArgo`]), for the
//! Workflow watcher's tests and for end-to-end tests that point a real `serve` at it with a
//! kubeconfig ([`FakeArgo::write_kubeconfig`]).
//!
//! It serves one namespace's `GET /apis/argoproj.io/v1alpha1/namespaces/<ns>/workflows`:
//! - a list (no `watch`): `WorkflowList` with every stored Workflow matching `labelSelector`
//!   and the current `metadata.resourceVersion` (no paging: `limit` is ignored);
//! - a watch (`watch=true&resourceVersion=N`): one JSON line per change after `N`
//!   (`{"type":"ADDED"|"MODIFIED"|"DELETED","object":...}`), pushed as it happens (watchers wait
//!   on a notification, never poll), until [`FakeArgo::end_watches`] closes it cleanly or
//!   [`FakeArgo::send_gone`] ends it with `{"type":"ERROR","object":{"kind":"Status","code":410,
//!   ...}}`. A watch from a resourceVersion older than [`FakeArgo::expire_history`] gets that
//!   ERROR event at once, as the API server answers "too old resource version" (HTTP 200, then
//!   the ERROR event).
//!
//! Label selectors: comma-separated `key`, `!key`, `key=value`, `key==value`, `key!=value`.
//! Anything else answers 404. Every request is logged ([`FakeArgo::requests`]); tests wait for
//! requests with [`FakeArgo::wait_until`] (a deadline, no sleeps).
//!
//! Test API: [`FakeArgo::start`], [`FakeArgo::apply`] (create or update: sets namespace, uid,
//! resourceVersion, creationTimestamp; ADDED or MODIFIED), [`FakeArgo::delete`],
//! [`workflow`] (a labelled Workflow value with an optional status), [`FakeArgo::client`] (a
//! kube client from the kubeconfig file), [`FakeArgo::url`], [`FakeArgo::resource_version`]
//! (of the last change: what a list returns and a watch resumes from),
//! [`FakeArgo::workflows_path`]. Stopped on drop; open watches end then.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::watch;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Query parameters, percent-decoded.
    pub query: BTreeMap<String, String>,
}

impl ApiRequest {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// Whether this is a watch (`watch=true` or `1`).
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }
}

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
struct Change {
    /// The resourceVersion the change produced.
    resource_version: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    kind: &'static str,
    /// The object after the change (before it, for `DELETED`, with the new resourceVersion).
    object: Value,
}

/// The stored state, behind one lock.
#[derive(Debug, Default)]
struct Store {
    /// The last resourceVersion handed out.
    resource_version: u64,
    /// The Workflows by name.
    objects: BTreeMap<String, Value>,
    /// Every change, in order.
    history: Vec<Change>,
    /// Watches from a resourceVersion below this get 410.
    oldest_valid: u64,
    /// Bumped by `end_watches`: watches started before end.
    end_epoch: u64,
    /// Bumped by `send_gone`: watches started before end with an ERROR 410.
    gone_epoch: u64,
}

struct Shared {
    /// The namespace served.
    namespace: String,
    /// The objects and their history.
    store: Mutex<Store>,
    /// Bumped after every change of `store`: what open watches wait on.
    changed: watch::Sender<u64>,
    /// Every request so far.
    requests: Mutex<Vec<ApiRequest>>,
    /// Bumped after each request is logged: what [`FakeArgo::wait_until`] waits on.
    request_count: watch::Sender<usize>,
}

/// See the module doc.
pub(crate) struct FakeArgo {
    /// The bound address.
    addr: SocketAddr,
    /// Shared with the handlers.
    shared: Arc<Shared>,
    /// Stops the server on drop.
    handle: ServerHandle,
    /// Holds the kubeconfig written by [`FakeArgo::client`].
    dir: tempfile::TempDir,
}

/// A Workflow as a Sensor creates it, labelled with `emission` (and a tenant and action), with
/// `status` when given.
pub(crate) fn workflow(name: &str, emission: &str, status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": name,
            "labels": {
                "tenant-gateway.io/emission-id": emission,
                "tenant-gateway.io/tenant": "acme",
                "tenant-gateway.io/action": "upsert",
            },
        },
        "spec": {"workflowTemplateRef": {"name": "tenant-lifecycle-upsert"}},
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

impl FakeArgo {
    /// The collection path of the Workflows of `namespace`.
    pub(crate) fn workflows_path(namespace: &str) -> String {
        format!("/apis/argoproj.io/v1alpha1/namespaces/{namespace}/workflows")
    }

    /// Starts a fake serving the Workflows of `namespace`, with none stored.
    pub(crate) async fn start(namespace: &str) -> FakeArgo {
        let shared = Arc::new(Shared {
            namespace: namespace.to_owned(),
            store: Mutex::new(Store {
                // Like a real server, resourceVersions start somewhere above zero.
                resource_version: 100,
                oldest_valid: 0,
                ..Store::default()
            }),
            changed: watch::Sender::new(0),
            requests: Mutex::new(Vec::new()),
            request_count: watch::Sender::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeArgo {
            addr,
            shared,
            handle,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig whose current context is this server (no credentials, the served
    /// namespace as default) to `dir/kubeconfig` and returns its path.
    pub(crate) fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake-argo\n  cluster:\n    server: {}\n\
             users:\n- name: tester\n  user: {{}}\ncontexts:\n- name: fake-argo\n  context:\n    \
             cluster: fake-argo\n    user: tester\n    namespace: {}\ncurrent-context: fake-argo\n",
            self.url(),
            self.shared.namespace
        );
        std::fs::write(&path, text).expect("write the kubeconfig");
        path
    }

    /// A kube client configured from a kubeconfig file naming this server, as `serve` builds
    /// one from `KUBECONFIG`.
    pub(crate) async fn client(&self) -> kube::Client {
        let path = self.write_kubeconfig(self.dir.path());
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("kubeconfig resolves");
        kube::Client::try_from(config).expect("client")
    }

    /// Creates or updates a Workflow (by `metadata.name`); returns its new resourceVersion.
    pub(crate) fn apply(&self, mut object: Value) -> u64 {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_owned();
        let rv = self.change(|store, rv| {
            let existing = store.objects.get(&name);
            let kind = if existing.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            let uid = existing
                .and_then(|o| o["metadata"]["uid"].as_str())
                .map_or_else(|| format!("uid-{name}-{rv}"), str::to_owned);
            let metadata = &mut object["metadata"];
            metadata["namespace"] = json!(self.shared.namespace);
            metadata["uid"] = json!(uid);
            metadata["resourceVersion"] = json!(rv.to_string());
            metadata["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            store.objects.insert(name.clone(), object.clone());
            Some((kind, object))
        });
        rv.expect("an apply is a change")
    }

    /// Deletes a Workflow; returns the resourceVersion of the deletion (`None` if absent).
    pub(crate) fn delete(&self, name: &str) -> Option<u64> {
        self.change(|store, rv| {
            let mut object = store.objects.remove(name)?;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            Some(("DELETED", object))
        })
    }

    /// Runs `apply` with the store and the next resourceVersion; a returned change is logged
    /// and pushed to the open watches.
    fn change(
        &self,
        apply: impl FnOnce(&mut Store, u64) -> Option<(&'static str, Value)>,
    ) -> Option<u64> {
        let rv = {
            let mut store = lock(&self.shared.store);
            let rv = store.resource_version + 1;
            let (kind, object) = apply(&mut store, rv)?;
            store.resource_version = rv;
            store.history.push(Change {
                resource_version: rv,
                kind,
                object,
            });
            rv
        };
        self.shared.changed.send_modify(|n| *n += 1);
        Some(rv)
    }

    /// The current resourceVersion (of the last change).
    pub(crate) fn resource_version(&self) -> u64 {
        lock(&self.shared.store).resource_version
    }

    /// Closes every open watch (the stream ends cleanly, as when the API server's watch
    /// timeout runs out or a connection drops).
    pub(crate) fn end_watches(&self) {
        lock(&self.shared.store).end_epoch += 1;
        self.shared.changed.send_modify(|n| *n += 1);
    }

    /// Makes every resourceVersion up to now too old to watch from (etcd compaction): a watch
    /// from one of them gets ERROR 410. Open watches are not affected.
    pub(crate) fn expire_history(&self) {
        let mut store = lock(&self.shared.store);
        store.oldest_valid = store.resource_version + 1;
    }

    /// [`FakeArgo::expire_history`], and every open watch receives ERROR 410 and ends.
    pub(crate) fn send_gone(&self) {
        {
            let mut store = lock(&self.shared.store);
            store.oldest_valid = store.resource_version + 1;
            store.gone_epoch += 1;
        }
        self.shared.changed.send_modify(|n| *n += 1);
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<ApiRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until `done` holds for the requests so far and returns them; panics with what
    /// arrived after `timeout`.
    pub(crate) async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[ApiRequest]) -> bool,
    ) -> Vec<ApiRequest> {
        let mut count = self.shared.request_count.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                count.borrow_and_update();
                let requests = self.requests();
                if done(&requests) {
                    return requests;
                }
                if count.changed().await.is_err() {
                    return requests;
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            panic!(
                "the fake API server did not get the expected requests within {timeout:?}; got {:#?}",
                self.requests()
            )
        })
    }
}

impl Drop for FakeArgo {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        // Open watches wait on this; ending them lets the server stop.
        self.end_watches();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One term of a label selector.
enum Term {
    /// `key`
    Exists(String),
    /// `!key`
    Absent(String),
    /// `key=value`, `key==value`
    Equals(String, String),
    /// `key!=value`
    NotEquals(String, String),
}

fn parse_selector(selector: &str) -> Vec<Term> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                Term::NotEquals(k.into(), v.into())
            } else if let Some((k, v)) = term.split_once("==") {
                Term::Equals(k.into(), v.into())
            } else if let Some((k, v)) = term.split_once('=') {
                Term::Equals(k.into(), v.into())
            } else if let Some(k) = term.strip_prefix('!') {
                Term::Absent(k.into())
            } else {
                Term::Exists(term.into())
            }
        })
        .collect()
}

fn selects(terms: &[Term], object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    terms.iter().all(|term| match term {
        Term::Exists(k) => label(k).is_some(),
        Term::Absent(k) => label(k).is_none(),
        Term::Equals(k, v) => label(k) == Some(v.as_str()),
        Term::NotEquals(k, v) => label(k) != Some(v.as_str()),
    })
}

fn gone_line(resource_version: u64, oldest: u64) -> Bytes {
    let event = json!({
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("too old resource version: {resource_version} ({oldest})"),
            "reason": "Expired",
            "code": 410,
        },
    });
    line(&event)
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("json");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

async fn handle(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let query: BTreeMap<String, String> =
        web::Query::<BTreeMap<String, String>>::from_query(request.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default();
    let logged = ApiRequest {
        method: request.method().to_string(),
        path: request.path().to_owned(),
        query,
    };
    let collection = FakeArgo::workflows_path(&shared.namespace);
    if logged.method != "GET" || logged.path != collection {
        log_request(&shared, logged);
        return HttpResponse::NotFound().json(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
            "code": 404,
        }));
    }
    let terms = parse_selector(logged.param("labelSelector").unwrap_or_default());
    if !logged.is_watch() {
        let list = {
            let store = lock(&shared.store);
            let items: Vec<&Value> = store
                .objects
                .values()
                .filter(|o| selects(&terms, o))
                .collect();
            let list = json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "WorkflowList",
                "metadata": {"resourceVersion": store.resource_version.to_string()},
                "items": items,
            });
            // Logged under the lock: a change made after a test saw this request is not in it.
            log_request(&shared, logged);
            list
        };
        return HttpResponse::Ok().json(list);
    }
    let from: u64 = logged
        .param("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let (end_epoch, gone_epoch, expired) = {
        let store = lock(&shared.store);
        let expired = (from < store.oldest_valid).then_some(store.oldest_valid);
        log_request(&shared, logged);
        (store.end_epoch, store.gone_epoch, expired)
    };
    if let Some(oldest) = expired {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(gone_line(from, oldest));
    }
    let cursor = WatchCursor {
        shared: shared.into_inner(),
        resource_version: from,
        end_epoch,
        gone_epoch,
        terms,
        done: false,
    };
    let changes = cursor.shared.changed.subscribe();
    let stream =
        futures_util::stream::unfold((cursor, changes), |(mut cursor, mut changes)| async move {
            let line = cursor.next_line(&mut changes).await?;
            Some((Ok::<_, std::convert::Infallible>(line), (cursor, changes)))
        });
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(stream)
}

/// Where one open watch stands.
struct WatchCursor {
    /// The fake's state.
    shared: Arc<Shared>,
    /// The last resourceVersion sent (or asked for).
    resource_version: u64,
    /// `end_epoch` when the watch started.
    end_epoch: u64,
    /// `gone_epoch` when the watch started.
    gone_epoch: u64,
    /// The watch's label selector.
    terms: Vec<Term>,
    /// Set after the final ERROR line.
    done: bool,
}

impl WatchCursor {
    /// The next line to send, waiting for a change when there is none; `None` ends the watch.
    async fn next_line(&mut self, changes: &mut watch::Receiver<u64>) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            // Marked seen before looking, so a change made after the look wakes the wait.
            changes.borrow_and_update();
            {
                let store = lock(&self.shared.store);
                if store.gone_epoch != self.gone_epoch {
                    self.done = true;
                    return Some(gone_line(self.resource_version, store.oldest_valid));
                }
                // Ended first: after `end_watches` the stream sends nothing more, as a closed
                // connection would; the watcher resumes from what it had.
                if store.end_epoch != self.end_epoch {
                    return None;
                }
                let after = self.resource_version;
                for change in store.history.iter().filter(|c| c.resource_version > after) {
                    self.resource_version = change.resource_version;
                    if selects(&self.terms, &change.object) {
                        return Some(line(&json!({"type": change.kind, "object": change.object})));
                    }
                }
            }
            if changes.changed().await.is_err() {
                return None;
            }
        }
    }
}

fn log_request(shared: &Shared, request: ApiRequest) {
    lock(&shared.requests).push(request);
    shared.request_count.send_modify(|n| *n += 1);
}
