//! The service assembled: [`DeliveryQueue::new`] builds it from its settings and its
//! transports, [`DeliveryQueue::serve`] works the queue. Production (`run`), `kubemail dev` and
//! the tests all build it here, so a new part of the service is added in one place.

use std::sync::Arc;
use std::time::Duration;

use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::{Queue, Spool};
use tonic::transport::Channel;

use crate::config::DeliveryFlags;
use crate::mailstore_client;
use crate::outbound::Outbound;
use crate::report::Reporter;
use crate::worker::Worker;

/// What the service decides by configuration rather than by its transports.
pub struct ServiceSettings {
    pub delivery: DeliveryFlags,
    /// This host's name: the Reporting-MTA of delivery reports and the domain they come from.
    pub hostname: String,
    /// How long a pulled envelope stays leased (the queue's setting); it is extended every
    /// third of it while a delivery runs.
    pub lease: Duration,
}

/// Where envelopes come from and where their mail goes.
pub struct Transports {
    pub queue: Arc<dyn Queue>,
    pub spool: Arc<dyn Spool>,
    /// Local recipients.
    pub mailstore: Channel,
    /// Remote recipients; `None` when this deployment sends no mail out.
    pub outbound: Option<Arc<dyn Outbound>>,
}

/// delivery-queue, ready to work.
pub struct DeliveryQueue {
    worker: Arc<Worker>,
}

impl DeliveryQueue {
    /// The service on `transports`, delivering as `settings` say.
    pub fn new(settings: ServiceSettings, transports: Transports) -> DeliveryQueue {
        let Transports { queue, spool, mailstore, outbound } = transports;
        let mailstore = mailstore_client(mailstore);
        let reporter = Reporter {
            mailstore: mailstore.clone(),
            spool: spool.clone(),
            queue: queue.clone(),
            hostname: settings.hostname,
        };
        let worker = Worker {
            queue,
            spool,
            mailstore,
            outbound,
            reporter,
            schedule: settings.delivery.schedule(),
            delay_warning: settings.delivery.delay_warning,
            concurrency: settings.delivery.concurrency,
            lease_renewal: settings.lease / 3,
        };
        DeliveryQueue { worker: Arc::new(worker) }
    }

    /// The worker, for processing one lease at a time (tests).
    pub fn worker(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    /// Delivers from the queue until `shutdown`, then lets the deliveries under way finish.
    pub async fn serve(self, shutdown: Shutdown) {
        self.worker.run(shutdown).await;
    }
}
