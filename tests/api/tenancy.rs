//! API keys decide the project; projects never see each other.

use hookd::grpc::pb;
use prost_types::FieldMask;
use tonic::Code;

use crate::db_test;

db_test!(
    another_projects_endpoint_is_not_found_everywhere,
    |app| async move {
        let mine = app.create_endpoint("mine").await;
        let (_, other_key) = app.other_project().await;
        let mut theirs = app
            .endpoints_with(Some(format!("Bearer {other_key}")))
            .await;

        let get = theirs
            .get_endpoint(pb::GetEndpointRequest {
                id: mine.id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(get.code(), Code::NotFound);
        let update = theirs
            .update_endpoint(pb::UpdateEndpointRequest {
                endpoint: Some(pb::Endpoint {
                    id: mine.id.clone(),
                    name: "hijacked".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["name".into()],
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(update.code(), Code::NotFound);
        let delete = theirs
            .delete_endpoint(pb::DeleteEndpointRequest {
                id: mine.id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(delete.code(), Code::NotFound);
        // Exactly like an id that does not exist at all.
        let missing = theirs
            .get_endpoint(pb::GetEndpointRequest {
                id: "ep_0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            (missing.code(), missing.message()),
            (get.code(), get.message())
        );

        let listed = theirs
            .list_endpoints(pb::ListEndpointsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.endpoints.is_empty());

        let still_mine = app
            .endpoints()
            .await
            .get_endpoint(pb::GetEndpointRequest {
                id: mine.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(still_mine.name, "mine", "untouched by the other project");
    }
);

db_test!(
    calls_without_a_valid_key_are_unauthenticated,
    |app| async move {
        let existing = app.create_endpoint("x").await;
        for authorization in [
            None,
            Some("Bearer hk_wrong".to_string()),
            Some(app.api_key.clone()),
            Some(format!("Basic {}", app.api_key)),
            Some("Bearer ".to_string()),
        ] {
            let mut client = app.endpoints_with(authorization.clone()).await;
            let results = [
                client
                    .create_endpoint(pb::CreateEndpointRequest {
                        endpoint: Some(crate::helpers::endpoint("nope")),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                client
                    .get_endpoint(pb::GetEndpointRequest {
                        id: existing.id.clone(),
                    })
                    .await
                    .map(drop),
                client
                    .list_endpoints(pb::ListEndpointsRequest::default())
                    .await
                    .map(drop),
                client
                    .update_endpoint(pb::UpdateEndpointRequest {
                        endpoint: Some(pb::Endpoint {
                            id: existing.id.clone(),
                            name: "n".into(),
                            ..Default::default()
                        }),
                        update_mask: None,
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                client
                    .delete_endpoint(pb::DeleteEndpointRequest {
                        id: existing.id.clone(),
                    })
                    .await
                    .map(drop),
            ];
            for result in results {
                let status = result.expect_err("refused");
                assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "{authorization:?}: {status:?}"
                );
            }
        }
        let listed = app
            .endpoints()
            .await
            .list_endpoints(pb::ListEndpointsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.endpoints.len(), 1, "nothing changed");
        assert_eq!(listed.endpoints[0].name, "x");
    }
);

db_test!(
    a_rotated_key_replaces_the_old_one_at_once,
    |app| async move {
        let new_key = hookd::cli::project::rotate_key(&app.store, &app.project_id)
            .await
            .unwrap();
        let old = app
            .endpoints()
            .await
            .list_endpoints(pb::ListEndpointsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(old.code(), Code::Unauthenticated);
        app.endpoints_with(Some(format!("bearer {}", new_key.expose())))
            .await
            .list_endpoints(pb::ListEndpointsRequest::default())
            .await
            .expect("the new key works (scheme is case-insensitive)");
    }
);
