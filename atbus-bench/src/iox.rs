//! `iceoryx2`: the same workloads over iceoryx2 publish-subscribe of `[u8]` slices, the
//! established zero-copy IPC library for Rust, as a reference point. One service per
//! run (a unique name), one publisher per writer process, one subscriber in the reader
//! process that checks each sample where it lies in shared memory. No sample may be
//! dropped: safe overflow is off and a publisher whose subscriber buffer is full retries
//! until the subscriber has taken a sample ([`BackpressureStrategy::RetryUntilDelivered`]).

use std::sync::Arc;

use atbus::Backoff;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::LoanError;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory;
use iceoryx2::service::port_factory::PortFactory as _;

type Factory = PortFactory<ipc::Service, [u8], ()>;

/// Samples the subscriber may hold from each publisher before that publisher waits: as
/// many messages as fill `channel_size` bytes over all writers (the depth an atbus ring
/// of that size gives), between 16 and 4096.
pub fn buffer_size(writers: usize, max_size: usize, channel_size: usize) -> usize {
    (channel_size / writers.max(1) / max_size.max(1)).clamp(16, 4096)
}

pub(crate) fn node() -> Result<Node<ipc::Service>, String> {
    // iceoryx2 logs failures it also returns, and the harness reports the returned error:
    // quiet unless IOX2_LOG_LEVEL asks for more (e.g. `warn`, to see why a run failed).
    set_log_level_from_env_or(LogLevel::Fatal);
    NodeBuilder::new()
        // The harness handles SIGINT/SIGTERM itself (procs::install_interrupt_handler).
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .map_err(|e| format!("iceoryx2: creating a node: {e:?}"))
}

pub(crate) fn service_name(name: &str) -> Result<ServiceName, String> {
    ServiceName::new(name).map_err(|e| format!("iceoryx2: service name {name:?}: {e:?}"))
}

fn open(node: &Node<ipc::Service>, name: &str) -> Result<Factory, String> {
    node.service_builder(&service_name(name)?)
        .publish_subscribe::<[u8]>()
        .open()
        .map_err(|e| {
            format!("iceoryx2: opening service {name:?}: {e:?} (did the parent create it?)")
        })
}

/// The service, created and kept alive by the parent for one run.
pub struct Owner {
    _service: Factory,
    _node: Node<ipc::Service>,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("iceoryx2 service")
    }
}

/// Creates service `name` for `writers` publishers and one subscriber, messages up to
/// `max_size` bytes, subscriber buffers of `buffer` samples.
pub fn create(name: &str, writers: usize, buffer: usize) -> Result<Arc<Owner>, String> {
    let node = node()?;
    let service = node
        .service_builder(&service_name(name)?)
        .publish_subscribe::<[u8]>()
        .max_publishers(writers)
        .max_subscribers(1)
        // The parent's node, the reader's and one per writer.
        .max_nodes(writers + 2)
        .history_size(0)
        .subscriber_max_buffer_size(buffer)
        .subscriber_max_borrowed_samples(1)
        .enable_safe_overflow(false)
        .create()
        .map_err(|e| format!("iceoryx2: creating service {name:?}: {e:?}"))?;
    Ok(Arc::new(Owner {
        _service: service,
        _node: node,
    }))
}

/// A writer process's publisher.
pub struct IoxSender {
    publisher: Publisher<ipc::Service, [u8], ()>,
    _service: Factory,
    _node: Node<ipc::Service>,
}

impl IoxSender {
    /// Opens service `name` and creates a publisher for messages up to `max_size` bytes.
    pub fn open(name: &str, max_size: usize) -> Result<IoxSender, String> {
        let node = node()?;
        let service = open(&node, name)?;
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(max_size)
            .max_loaned_samples(1)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(|e| format!("iceoryx2: creating a publisher on {name:?}: {e:?}"))?;
        Ok(IoxSender {
            publisher,
            _service: service,
            _node: node,
        })
    }

    /// Copies `msg` into a loaned sample and sends it; waits while the subscriber's buffer
    /// is full (inside iceoryx2) or every sample is in flight (here, with [`Backoff`]).
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        let mut backoff = Backoff::new();
        let sample = loop {
            match self.publisher.loan_slice_uninit(msg.len()) {
                Ok(s) => break s,
                Err(LoanError::OutOfMemory) => backoff.snooze(),
                Err(e) => return Err(format!("iceoryx2: loan of {} bytes: {e:?}", msg.len())),
            }
        };
        let delivered = sample
            .write_from_slice(msg)
            .send()
            .map_err(|e| format!("iceoryx2: send: {e:?}"))?;
        if delivered != 1 {
            return Err(format!(
                "iceoryx2: a sample reached {delivered} subscribers, not the reader's one"
            ));
        }
        Ok(())
    }
}

/// The reader process's subscriber.
pub struct IoxReceiver {
    subscriber: Subscriber<ipc::Service, [u8], ()>,
    service: Factory,
    _node: Node<ipc::Service>,
}

impl IoxReceiver {
    /// Opens service `name` and creates the subscriber with a buffer of `buffer` samples.
    pub fn open(name: &str, buffer: usize) -> Result<IoxReceiver, String> {
        let node = node()?;
        let service = open(&node, name)?;
        let subscriber = service
            .subscriber_builder()
            .buffer_size(buffer)
            .create()
            .map_err(|e| format!("iceoryx2: creating the subscriber on {name:?}: {e:?}"))?;
        Ok(IoxReceiver {
            subscriber,
            service,
            _node: node,
        })
    }

    /// Waits until `writers` publishers exist (or `abort` says to stop) and connects the
    /// subscriber to each. A publisher that sends before its subscriber has connected
    /// fills the connection's buffer and then drops samples
    /// (`NoConnectedReceiverAndBufferIsFull`): writers start only after this.
    pub fn connect(&mut self, writers: usize, abort: impl Fn() -> bool) -> Result<(), String> {
        let mut backoff = Backoff::new();
        while self.service.dynamic_config().number_of_publishers() < writers {
            if abort() {
                return Err("iceoryx2: the run ended before every writer had a publisher".into());
            }
            backoff.snooze();
        }
        // `has_samples` connects to every publisher the service lists.
        self.subscriber
            .has_samples()
            .map_err(|e| format!("iceoryx2: connecting the subscriber to the publishers: {e:?}"))?;
        Ok(())
    }

    /// Waits (with [`Backoff`]) for the next sample and hands its payload, in shared
    /// memory, to `f`; the sample goes back to its publisher afterwards.
    #[inline]
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let mut backoff = Backoff::new();
        loop {
            match self.subscriber.receive() {
                Ok(Some(sample)) => return Ok(f(sample.payload())),
                Ok(None) => backoff.snooze(),
                Err(e) => return Err(format!("iceoryx2: receive: {e:?}")),
            }
        }
    }
}
