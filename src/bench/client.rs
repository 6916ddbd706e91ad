//! gRPC clients for the hookd instances, authenticated, round-robin.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::grpc::pb;
use crate::grpc::pb::endpoint_service_client::EndpointServiceClient;
use crate::grpc::pb::event_service_client::EventServiceClient;

type Authorized = InterceptedService<Channel, Auth>;

#[derive(Clone)]
pub(super) struct Auth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Several HTTP/2 connections per instance, so one connection's ordering
/// does not become the bottleneck.
const CHANNELS_PER_INSTANCE: usize = 4;

pub(super) struct Api {
    events: Vec<EventServiceClient<Authorized>>,
    endpoints: EndpointServiceClient<Authorized>,
    next: AtomicUsize,
}

impl Api {
    pub(super) async fn connect(addrs: &[String], api_key: &str) -> Result<Self, String> {
        let auth = Auth(
            format!("Bearer {api_key}")
                .parse()
                .map_err(|_| "the API key is not ASCII".to_owned())?,
        );
        let mut events = Vec::new();
        let mut first = None;
        for addr in addrs {
            for _ in 0..CHANNELS_PER_INSTANCE {
                let channel = Channel::from_shared(format!("http://{addr}"))
                    .map_err(|e| e.to_string())?
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .map_err(|e| format!("connect to hookd at {addr}: {e}"))?;
                first.get_or_insert_with(|| channel.clone());
                events.push(
                    EventServiceClient::with_interceptor(channel, auth.clone())
                        .max_decoding_message_size(64 * 1024 * 1024),
                );
            }
        }
        let endpoints =
            EndpointServiceClient::with_interceptor(first.ok_or("no hookd instance")?, auth);
        Ok(Self {
            events,
            endpoints,
            next: AtomicUsize::new(0),
        })
    }

    /// The next events client in turn.
    pub(super) fn events(&self) -> EventServiceClient<Authorized> {
        let i = self.next.fetch_add(1, Relaxed) % self.events.len();
        self.events[i].clone()
    }

    pub(super) async fn create_endpoint(
        &self,
        url: String,
        owner: &str,
        secret: &str,
    ) -> Result<String, String> {
        let endpoint = pb::Endpoint {
            name: "bench".into(),
            url,
            owner_id: owner.into(),
            secret: secret.into(),
            ..Default::default()
        };
        self.endpoints
            .clone()
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(endpoint),
                // Some bench endpoints never answer, on purpose.
                skip_ping_validation: true,
            })
            .await
            .map(|r| r.into_inner().id)
            .map_err(|e| format!("create endpoint: {}", e.message()))
    }
}
