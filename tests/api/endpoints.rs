//! EndpointService behaviour: create, read, update, delete.

use hookd::domain::ids::EndpointId;
use hookd::domain::time::Timestamp;
use hookd::grpc::pb;
use prost_types::FieldMask;
use tonic::Code;

use crate::db_test;
use crate::helpers::{TestApp, endpoint};

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn micros(at: &Option<prost_types::Timestamp>) -> i64 {
    let at = at.as_ref().expect("timestamp set");
    at.seconds * 1_000_000 + i64::from(at.nanos / 1_000)
}

fn full_endpoint() -> pb::Endpoint {
    pb::Endpoint {
        name: "orders".into(),
        url: "https://hooks.example.com/orders?v=2".into(),
        secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into(),
        headers: [("X-Tenant".to_string(), "acme".to_string())].into(),
        timeout_seconds: 25,
        owner_id: "customer-42".into(),
        description: "order events".into(),
        content_type: "application/x-www-form-urlencoded".into(),
        rate_limit: Some(pb::RateLimit {
            count: 100,
            period_seconds: 60,
        }),
        event_types: vec!["order.paid".into(), "order.created".into()],
        ..Default::default()
    }
}

async fn stored_secrets(app: &TestApp, id: &str) -> Vec<String> {
    let id: EndpointId = id.parse().unwrap();
    app.store
        .endpoint_secrets(&id, Timestamp::from_unix_micros(0))
        .await
        .unwrap()
        .iter()
        .map(|s| s.expose().to_owned())
        .collect()
}

db_test!(
    create_applies_defaults_and_shows_a_generated_secret_once,
    |app| async move {
        let mut client = app.endpoints().await;
        let created = client
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(endpoint("minimal")),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();

        assert!(created.id.starts_with("ep_"), "{}", created.id);
        assert!(created.id.parse::<EndpointId>().is_ok());
        assert_eq!(created.timeout_seconds, 10);
        assert_eq!(created.content_type, "application/json");
        assert_eq!(created.status, pb::EndpointStatus::Active as i32);
        assert_eq!(created.paused_at, None);
        assert!(created.created_at.is_some());
        assert_eq!(created.created_at, created.updated_at);
        assert!(
            created.secret.starts_with("whsec_"),
            "generated secret is returned"
        );
        assert_eq!(
            stored_secrets(&app, &created.id).await,
            vec![created.secret.clone()]
        );

        let fetched = client
            .get_endpoint(pb::GetEndpointRequest {
                id: created.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fetched.secret, "", "the secret is never shown again");
        assert_eq!(
            pb::Endpoint {
                secret: String::new(),
                ..created
            },
            fetched
        );
    }
);

db_test!(
    a_supplied_secret_is_stored_but_never_echoed,
    |app| async move {
        let mut client = app.endpoints().await;
        let created = client
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(full_endpoint()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.secret, "");
        assert_eq!(
            stored_secrets(&app, &created.id).await,
            vec!["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_string()]
        );
    }
);

db_test!(crud_round_trip, |app| async move {
    let mut client = app.endpoints().await;
    let created = client
        .create_endpoint(pb::CreateEndpointRequest {
            endpoint: Some(full_endpoint()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.name, "orders");
    assert_eq!(created.url, "https://hooks.example.com/orders?v=2");
    assert_eq!(
        created.headers.get("x-tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!(created.timeout_seconds, 25);
    assert_eq!(created.owner_id, "customer-42");
    assert_eq!(created.description, "order events");
    assert_eq!(created.content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        created.rate_limit,
        Some(pb::RateLimit {
            count: 100,
            period_seconds: 60
        })
    );
    assert_eq!(created.event_types, vec!["order.created", "order.paid"]);

    let got = client
        .get_endpoint(pb::GetEndpointRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    let listed = client
        .list_endpoints(pb::ListEndpointsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.endpoints, vec![created.clone()]);
    assert_eq!(listed.next_page_token, "");

    let updated = client
        .update_endpoint(pb::UpdateEndpointRequest {
            endpoint: Some(pb::Endpoint {
                id: created.id.clone(),
                name: "orders-v2".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "orders-v2");
    assert!(micros(&updated.updated_at) > micros(&created.updated_at));
    assert_eq!(updated.created_at, created.created_at);

    client
        .delete_endpoint(pb::DeleteEndpointRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap();
    let gone = client
        .get_endpoint(pb::GetEndpointRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let again = client
        .delete_endpoint(pb::DeleteEndpointRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    assert!(
        stored_secrets(&app, &created.id).await.is_empty(),
        "secrets go with the endpoint"
    );
});

db_test!(
    masked_update_changes_exactly_the_masked_fields,
    |app| async move {
        let mut client = app.endpoints().await;
        let created = client
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(full_endpoint()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();

        // Name and description are masked (description left empty: cleared);
        // url is set in the request but not masked, so it must not change.
        let updated = client
            .update_endpoint(pb::UpdateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    id: created.id.clone(),
                    name: "renamed".into(),
                    url: "https://elsewhere.example.com/".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name", "description", "rate_limit", "timeout_seconds"]),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.name, "renamed");
        assert_eq!(updated.description, "");
        assert_eq!(updated.rate_limit, None);
        assert_eq!(
            updated.timeout_seconds, 10,
            "masked and empty resets to the default"
        );
        assert_eq!(updated.url, created.url);
        assert_eq!(updated.owner_id, created.owner_id);
        assert_eq!(updated.headers, created.headers);
        assert_eq!(updated.event_types, created.event_types);
        assert_eq!(updated.content_type, created.content_type);
        assert_eq!(updated.secret, "");
    }
);

db_test!(
    update_without_mask_changes_the_fields_the_request_sets,
    |app| async move {
        let mut client = app.endpoints().await;
        let created = client
            .create_endpoint(pb::CreateEndpointRequest {
                endpoint: Some(full_endpoint()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let updated = client
            .update_endpoint(pb::UpdateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    id: created.id.clone(),
                    url: "https://elsewhere.example.com/in".into(),
                    event_types: vec!["order.refunded".into()],
                    ..Default::default()
                }),
                update_mask: None,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.url, "https://elsewhere.example.com/in");
        assert_eq!(updated.event_types, vec!["order.refunded"]);
        // Unset fields keep their values.
        assert_eq!(updated.name, created.name);
        assert_eq!(updated.description, created.description);
        assert_eq!(updated.rate_limit, created.rate_limit);
        assert_eq!(updated.timeout_seconds, created.timeout_seconds);
        assert_eq!(
            stored_secrets(&app, &created.id).await,
            vec!["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_string()],
            "the secret is untouched"
        );

        let got = client
            .get_endpoint(pb::GetEndpointRequest {
                id: created.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, updated);
    }
);

db_test!(
    update_can_replace_or_regenerate_the_secret,
    |app| async move {
        let mut client = app.endpoints().await;
        let created = app.create_endpoint("s").await;

        let replaced = client
            .update_endpoint(pb::UpdateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    id: created.id.clone(),
                    secret: "a-brand-new-secret".into(),
                    ..Default::default()
                }),
                update_mask: None,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(replaced.secret, "", "a supplied secret is not echoed");
        assert_eq!(
            stored_secrets(&app, &created.id).await,
            vec!["a-brand-new-secret".to_string()]
        );

        let regenerated = client
            .update_endpoint(pb::UpdateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    id: created.id.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["secret"]),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(regenerated.secret.starts_with("whsec_"));
        assert_ne!(regenerated.secret, created.secret);
        assert_eq!(
            stored_secrets(&app, &created.id).await,
            vec![regenerated.secret.clone()]
        );
    }
);

db_test!(pause_and_resume_stamp_the_time, |app| async move {
    let mut client = app.endpoints().await;
    let created = app.create_endpoint("p").await;
    let set_status = |status: pb::EndpointStatus| pb::UpdateEndpointRequest {
        endpoint: Some(pb::Endpoint {
            id: created.id.clone(),
            status: status as i32,
            ..Default::default()
        }),
        update_mask: mask(&["status"]),
        ..Default::default()
    };

    let paused = client
        .update_endpoint(set_status(pb::EndpointStatus::Paused))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.status, pb::EndpointStatus::Paused as i32);
    assert!(paused.paused_at.is_some());
    assert_eq!(paused.paused_at, paused.status_changed_at);

    let resumed = client
        .update_endpoint(set_status(pb::EndpointStatus::Active))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.status, pb::EndpointStatus::Active as i32);
    assert_eq!(resumed.paused_at, None);
    assert!(micros(&resumed.status_changed_at) > micros(&paused.status_changed_at));

    for target in [pb::EndpointStatus::Inactive, pb::EndpointStatus::Pending] {
        let refused = client
            .update_endpoint(set_status(target))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::FailedPrecondition,
            "{target:?}: {refused:?}"
        );
    }
    let unchanged = client
        .get_endpoint(pb::GetEndpointRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged, resumed, "refused transitions change nothing");
});

db_test!(
    concurrent_updates_of_different_fields_all_land,
    |app| async move {
        let created = app.create_endpoint("race").await;
        let mut tasks = Vec::new();
        for (path, value) in [
            ("name", "n2"),
            ("description", "d2"),
            ("owner_id", "o2"),
            ("url", "https://race.example.com/"),
        ] {
            let mut client = app.endpoints().await;
            let id = created.id.clone();
            tasks.push(tokio::spawn(async move {
                let mut ep = pb::Endpoint {
                    id,
                    ..Default::default()
                };
                match path {
                    "name" => ep.name = value.into(),
                    "description" => ep.description = value.into(),
                    "owner_id" => ep.owner_id = value.into(),
                    _ => ep.url = value.into(),
                }
                client
                    .update_endpoint(pb::UpdateEndpointRequest {
                        endpoint: Some(ep),
                        update_mask: mask(&[path]),
                        ..Default::default()
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().expect("update succeeds");
        }
        let got = app
            .endpoints()
            .await
            .get_endpoint(pb::GetEndpointRequest {
                id: created.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                got.name.as_str(),
                got.description.as_str(),
                got.owner_id.as_str(),
                got.url.as_str()
            ),
            ("n2", "d2", "o2", "https://race.example.com/"),
            "no update was lost"
        );
    }
);
