//! What the runtime's test binaries share.

use kubemail_runtime::nats::NatsConfig;

/// A configuration on the test NATS server whose streams, subjects and consumer no other test
/// uses.
pub fn unique_nats_config() -> NatsConfig {
    NatsConfig {
        url: kubemail_testkit::nats_url(),
        stream: kubemail_testkit::unique_name("QUEUE"),
        subject_prefix: kubemail_testkit::unique_name("queue"),
        consumer: kubemail_testkit::unique_name("delivery"),
        spool_stream: kubemail_testkit::unique_name("SPOOL"),
        dead_letter_stream: kubemail_testkit::unique_name("DEADLETTER"),
        ..NatsConfig::default()
    }
}
