//! `rpc`'s iceoryx2 reference: request-response of `[u8]` slices. One service per run
//! (a unique name, created and kept by the parent), one server port in the server
//! process, one client port per client process. iceoryx2's ports have no blocking wait
//! of their own (that takes an event service and a WaitSet besides), so both sides
//! poll: the server with [`PollWait`](crate::rpc::PollWait) (spin, yield for up to 200 µs, then sleep), as the
//! spinning atbus server does; the clients with [`Backoff`] (spin, ten yields, then
//! sleep), as compare's iceoryx2 reader does. (Clients that yield for 200 µs too take the
//! cores from the server when there are 8 of them: p50 97 µs against 3 to 5 µs, measured
//! at 8 B.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use iceoryx2::port::client::Client;
use iceoryx2::port::server::Server;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::request_response::PortFactory;

use atbus::Backoff;

use crate::iox::{node, service_name};

type Factory = PortFactory<ipc::Service, [u8], (), [u8], ()>;

fn open(node: &Node<ipc::Service>, name: &str) -> Result<Factory, String> {
    node.service_builder(&service_name(name)?)
        .request_response::<[u8], [u8]>()
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

/// Creates request-response service `name` for `clients` clients and one server.
pub fn create(name: &str, clients: usize) -> Result<Arc<Owner>, String> {
    let node = node()?;
    let service = node
        .service_builder(&service_name(name)?)
        .request_response::<[u8], [u8]>()
        .max_clients(clients)
        .max_servers(1)
        // The parent's node, the server's and one per client.
        .max_nodes(clients + 2)
        .max_active_requests_per_client(1)
        .enable_safe_overflow_for_requests(false)
        .enable_safe_overflow_for_responses(false)
        .create()
        .map_err(|e| format!("iceoryx2: creating service {name:?}: {e:?}"))?;
    Ok(Arc::new(Owner {
        _service: service,
        _node: node,
    }))
}

/// The server process's port.
pub struct IoxServer {
    server: Server<ipc::Service, [u8], (), [u8], ()>,
    _service: Factory,
    _node: Node<ipc::Service>,
}

impl IoxServer {
    /// Opens service `name` and creates its server for payloads up to `max_size` bytes.
    pub fn open(name: &str, max_size: usize) -> Result<IoxServer, String> {
        let node = node()?;
        let service = open(&node, name)?;
        let server = service
            .server_builder()
            .initial_max_slice_len(max_size)
            .create()
            .map_err(|e| format!("iceoryx2: creating the server on {name:?}: {e:?}"))?;
        Ok(IoxServer {
            server,
            _service: service,
            _node: node,
        })
    }

    /// Answers every request waiting now with `answer(request, response)` (the response
    /// slice has the request's length); returns how many.
    pub fn serve_ready(&mut self, answer: impl Fn(&[u8], &mut [u8])) -> Result<usize, String> {
        let mut n = 0;
        while let Some(request) = self
            .server
            .receive()
            .map_err(|e| format!("iceoryx2: receive: {e:?}"))?
        {
            let req = request.payload();
            let response = request
                .loan_slice_uninit(req.len())
                .map_err(|e| format!("iceoryx2: loan of {} bytes: {e:?}", req.len()))?;
            let mut response = response.write_from_slice(req);
            answer(req, response.payload_mut());
            response
                .send()
                .map_err(|e| format!("iceoryx2: send of a response: {e:?}"))?;
            n += 1;
        }
        Ok(n)
    }
}

/// A client process's port.
pub struct IoxClient {
    client: Client<ipc::Service, [u8], (), [u8], ()>,
    _service: Factory,
    _node: Node<ipc::Service>,
}

impl IoxClient {
    /// Opens service `name` and creates a client for payloads up to `max_size` bytes.
    pub fn open(name: &str, max_size: usize) -> Result<IoxClient, String> {
        let node = node()?;
        let service = open(&node, name)?;
        let client = service
            .client_builder()
            .initial_max_slice_len(max_size)
            .create()
            .map_err(|e| format!("iceoryx2: creating a client on {name:?}: {e:?}"))?;
        Ok(IoxClient {
            client,
            _service: service,
            _node: node,
        })
    }

    /// Sends `request`, polls (with [`Backoff`]) for its response and copies it into
    /// `reply` (cleared first). Fails if no server is connected or no response comes
    /// within `timeout`.
    pub fn round_trip(
        &mut self,
        request: &[u8],
        reply: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), String> {
        let loan = self
            .client
            .loan_slice_uninit(request.len())
            .map_err(|e| format!("iceoryx2: loan of {} bytes: {e:?}", request.len()))?;
        let pending = loan
            .write_from_slice(request)
            .send()
            .map_err(|e| format!("iceoryx2: send of a request: {e:?}"))?;
        if pending.number_of_server_connections() == 0 {
            return Err("iceoryx2: the request reached no server".into());
        }
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::new();
        loop {
            match pending.receive() {
                Ok(Some(response)) => {
                    reply.clear();
                    reply.extend_from_slice(response.payload());
                    return Ok(());
                }
                Ok(None) => {
                    if backoff.is_sleeping() && Instant::now() >= deadline {
                        return Err(format!("iceoryx2: no response within {timeout:?}"));
                    }
                    backoff.snooze();
                }
                Err(e) => return Err(format!("iceoryx2: receive of a response: {e:?}")),
            }
        }
    }
}
