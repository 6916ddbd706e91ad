//! Health, reflection and graceful shutdown.

use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::db_test;
use crate::helpers::TEST_GRACE;

const ENDPOINT_SERVICE: &str = "hookd.v1.EndpointService";

db_test!(
    health_is_serving_overall_and_per_service,
    |app| async move {
        let mut health = HealthClient::new(app.channel().await);
        for service in ["", ENDPOINT_SERVICE] {
            let reply = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                reply.status(),
                ServingStatus::Serving,
                "service {service:?}"
            );
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    }
);

db_test!(
    reflection_lists_every_service_in_both_versions,
    |app| async move {
        // Each reflection version lists the application's services and itself.
        let expected = |version: &str| {
            [
                ENDPOINT_SERVICE.to_string(),
                "grpc.health.v1.Health".to_string(),
                format!("grpc.reflection.{version}.ServerReflection"),
            ]
        };
        {
            use tonic_reflection::pb::v1::ServerReflectionRequest;
            use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
            let mut client = ServerReflectionClient::new(app.channel().await);
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut replies = client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .unwrap()
                .into_inner();
            let reply = replies.message().await.unwrap().expect("one reply");
            let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
                panic!("unexpected reply {reply:?}");
            };
            let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            for name in expected("v1") {
                assert!(names.contains(&name), "v1 lists {name}: {names:?}");
            }
        }
        {
            use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
            use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
            let mut client = ServerReflectionClient::new(app.channel().await);
            let requests = [
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                },
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::FileContainingSymbol(
                        ENDPOINT_SERVICE.into(),
                    )),
                },
            ];
            let mut replies = client
                .server_reflection_info(tokio_stream::iter(requests))
                .await
                .unwrap()
                .into_inner();
            let reply = replies.message().await.unwrap().expect("list reply");
            let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
                panic!("unexpected reply {reply:?}");
            };
            let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            for name in expected("v1alpha") {
                assert!(names.contains(&name), "v1alpha lists {name}: {names:?}");
            }
            let reply = replies.message().await.unwrap().expect("describe reply");
            let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response
            else {
                panic!("unexpected reply {reply:?}");
            };
            assert!(
                !files.file_descriptor_proto.is_empty(),
                "describe finds the service's file"
            );
        }
    }
);

db_test!(
    graceful_shutdown_reports_not_serving_and_stops_within_the_grace_period,
    |app| async move {
        let mut app = app;
        let mut health = HealthClient::new(app.channel().await);
        // A long-running call in flight: the overall health watch.
        let mut watch = health
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().expect("initial status");
        assert_eq!(first.status(), ServingStatus::Serving);

        let started = Instant::now();
        let stopping = tokio::spawn(async move {
            let result = app.shutdown().await;
            (result, app)
        });
        // The in-flight call hears about the shutdown before the server stops.
        let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("status update arrives")
            .unwrap()
            .expect("stream still open");
        assert_eq!(next.status(), ServingStatus::NotServing);

        let (result, app) = stopping.await.unwrap();
        result.expect("run returns Ok");
        assert!(
            started.elapsed() < TEST_GRACE + Duration::from_secs(3),
            "stopped within the grace period: {:?}",
            started.elapsed()
        );
        // The listener is gone: new connections are refused.
        let refused = tonic::transport::Channel::from_shared(app.uri())
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await;
        assert!(refused.is_err(), "no new connections after shutdown");
    }
);

db_test!(
    an_in_flight_call_completes_during_graceful_shutdown,
    |app| async move {
        use hookd::grpc::pb;

        let mut app = app;
        let created = app.create_endpoint("before").await;
        let mut client = app.endpoints().await;

        let lock = app.db().hold_endpoint_writes().await;
        let id = created.id.clone();
        let update = tokio::spawn(async move {
            client
                .update_endpoint(pb::UpdateEndpointRequest {
                    endpoint: Some(pb::Endpoint {
                        id,
                        name: "during".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["name".into()],
                    }),
                    ..Default::default()
                })
                .await
        });
        // Let the call reach the blocked write, then ask the server to stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!update.is_finished(), "the update is held by the lock");
        let stopping = tokio::spawn(async move {
            let result = app.shutdown().await;
            (result, app)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !stopping.is_finished(),
            "shutdown waits for the in-flight call"
        );
        lock.commit().await.unwrap();

        let updated = update
            .await
            .unwrap()
            .expect("the in-flight call completes")
            .into_inner();
        assert_eq!(updated.name, "during");
        let (result, app) = stopping.await.unwrap();
        result.expect("run returns Ok");
        let stored = app
            .store
            .get_endpoint(&app.project_id, &created.id.parse().unwrap())
            .await
            .unwrap();
        assert_eq!(stored.name.as_str(), "during", "its write is committed");
    }
);
