//! Leader election over the mocked API server: of two replicas one does the work, and the
//! other takes over when the first stops.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::FakeApi;
use kubemail_operator::run::{Lease, lead};
use kubemail_runtime::shutdown::Shutdown;

/// Who is working now (a worker leaves it when it stops or is aborted), and every time two
/// worked at once.
#[derive(Clone, Default)]
struct Working(Arc<Mutex<BTreeSet<&'static str>>>, Arc<Mutex<Vec<String>>>);

struct Shift(Working, &'static str);

impl Drop for Shift {
    fn drop(&mut self) {
        self.0.0.lock().unwrap().remove(self.1);
    }
}

impl Working {
    fn work(
        &self,
        name: &'static str,
        shutdown: Shutdown,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + use<> {
        let working = self.clone();
        move || {
            let working = working.clone();
            let shutdown = shutdown.clone();
            Box::pin(async move {
                {
                    let mut now = working.0.lock().unwrap();
                    if !now.is_empty() {
                        working.1.lock().unwrap().push(format!("{name} started while {now:?} worked"));
                    }
                    now.insert(name);
                }
                let _shift = Shift(working.clone(), name);
                shutdown.wait().await;
            })
        }
    }

    fn now(&self) -> BTreeSet<&'static str> {
        self.0.lock().unwrap().clone()
    }

    async fn wait_for(&self, expected: &[&'static str], within: Duration) {
        let deadline = Instant::now() + within;
        while self.now() != expected.iter().copied().collect() {
            assert!(Instant::now() < deadline, "expected {expected:?} working, not {:?}", self.now());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn lease(identity: &str) -> Lease {
    Lease {
        name: "kubemail-operator".into(),
        namespace: "kubemail-system".into(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_replicas_one_works_and_the_other_takes_over() {
    let (client, fake) = FakeApi::start();
    let working = Working::default();
    let (stop_a, stop_b) = (Shutdown::new(), Shutdown::new());
    let a = tokio::spawn({
        let (client, work) = (client.clone(), working.work("a", stop_a.clone()));
        let stop = stop_a.clone();
        async move { lead(client, &lease("a"), stop, work).await }
    });
    working.wait_for(&["a"], Duration::from_secs(10)).await;
    let b = tokio::spawn({
        let (client, work) = (client.clone(), working.work("b", stop_b.clone()));
        let stop = stop_b.clone();
        async move { lead(client, &lease("b"), stop, work).await }
    });
    // Longer than a lease lasts: a renews it, b waits.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(working.now(), ["a"].into_iter().collect());

    stop_a.trigger();
    a.await.unwrap().unwrap();
    working.wait_for(&["b"], Duration::from_secs(10)).await;
    stop_b.trigger();
    b.await.unwrap().unwrap();
    assert!(working.now().is_empty());
    assert!(working.1.lock().unwrap().is_empty(), "{:?}", working.1.lock().unwrap());

    // Leader election needs the operator's own namespace only, and all that is granted there.
    let used = fake.permissions();
    for (group, resource, verb) in &used {
        assert!(kubemail_operator::rbac::allows(group, resource, verb, true), "{verb} on {group}/{resource}");
        assert!(
            !kubemail_operator::rbac::allows(group, resource, verb, false),
            "{verb} on {group}/{resource} cluster-wide"
        );
    }
    for rule in kubemail_operator::rbac::namespace_rules() {
        for verb in &rule.verbs {
            let resource = &rule.resources.as_ref().unwrap()[0];
            assert!(
                used.iter().any(|(_, r, v)| r == resource && v == verb),
                "{verb} on {resource} is granted but not used"
            );
        }
    }
}
