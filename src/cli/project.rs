//! `hookd project create | list | rotate-key`.

use std::io::Write;

use super::CliError;
use crate::config::ProjectCommand;
use crate::domain::ids::{ApiKeyId, ProjectId};
use crate::domain::project::{Project, ProjectName};
use crate::domain::secret::ApiKey;
use crate::domain::time::Clock;
use crate::store::{NewProject, Store, StoreError};
use crate::system::{self, SystemClock};

pub(super) async fn run(command: ProjectCommand, store: &Store) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        ProjectCommand::Create { name, json } => {
            let name =
                ProjectName::parse(&name).map_err(|e| CliError::Usage(format!("--name: {e}")))?;
            let (id, key) = create(store, name).await?;
            print_key(&mut out, &id, &key, json)?;
        }
        ProjectCommand::List { json } => {
            let projects = store.list_projects().await?;
            if json {
                let rows: Vec<_> = projects
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "project_id": p.project.id.as_str(),
                            "name": p.project.name.as_str(),
                            "created_at": p.project.created_at.to_string(),
                            "key_prefixes": p.key_prefixes,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::Array(rows))?;
            } else {
                writeln!(
                    out,
                    "{:<42} {:<28} {:<24} NAME",
                    "PROJECT", "CREATED", "KEYS"
                )?;
                for p in &projects {
                    writeln!(
                        out,
                        "{:<42} {:<28} {:<24} {}",
                        p.project.id,
                        p.project.created_at,
                        p.key_prefixes
                            .iter()
                            .map(|k| format!("{k}…"))
                            .collect::<Vec<_>>()
                            .join(","),
                        p.project.name.as_str()
                    )?;
                }
            }
        }
        ProjectCommand::Configure {
            project,
            breaker_failures,
        } => {
            let id: ProjectId = project
                .parse()
                .map_err(|e| CliError::Usage(format!("--project: {e}")))?;
            let Some(failures) = breaker_failures else {
                return Err(CliError::Usage(
                    "nothing to change: pass --breaker-failures".into(),
                ));
            };
            match store
                .set_breaker_failures(&id, (failures > 0).then_some(failures), SystemClock.now())
                .await
            {
                Err(StoreError::NotFound) => {
                    return Err(CliError::Usage(format!("--project: no project {id}")));
                }
                other => other?,
            }
            writeln!(
                out,
                "project {id}: breaker threshold {}",
                match failures {
                    0 => "the server's".to_owned(),
                    n => n.to_string(),
                }
            )?;
        }
        ProjectCommand::RotateKey { project, json } => {
            let id: ProjectId = project
                .parse()
                .map_err(|e| CliError::Usage(format!("--project: {e}")))?;
            let key = match rotate_key(store, &id).await {
                Err(StoreError::NotFound) => {
                    return Err(CliError::Usage(format!("--project: no project {id}")));
                }
                other => other?,
            };
            print_key(&mut out, &id, &key, json)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Creates a project with a fresh API key; the key is returned once and
/// stored only as a hash.
pub async fn create(store: &Store, name: ProjectName) -> Result<(ProjectId, ApiKey), StoreError> {
    let project = Project {
        id: ProjectId::from_uuid(system::new_uuid()),
        name,
        created_at: SystemClock.now(),
    };
    let id = project.id.clone();
    let key = ApiKey::generate(system::random_bytes());
    store
        .create_project(NewProject {
            project,
            key_id: ApiKeyId::from_uuid(system::new_uuid()),
            key: key.clone(),
        })
        .await?;
    Ok((id, key))
}

/// Replaces the project's keys with a fresh one.
pub async fn rotate_key(store: &Store, project: &ProjectId) -> Result<ApiKey, StoreError> {
    let key = ApiKey::generate(system::random_bytes());
    store
        .rotate_project_key(
            project,
            ApiKeyId::from_uuid(system::new_uuid()),
            &key,
            SystemClock.now(),
        )
        .await?;
    Ok(key)
}

fn print_key(
    out: &mut impl Write,
    project: &ProjectId,
    key: &ApiKey,
    json: bool,
) -> Result<(), CliError> {
    if json {
        let object = serde_json::json!({
            "project_id": project.as_str(),
            "api_key": key.expose(),
        });
        writeln!(out, "{object}")?;
    } else {
        writeln!(out, "project: {project}")?;
        writeln!(out, "api key: {}", key.expose())?;
        writeln!(
            out,
            "Keep the key now: it is stored only as a hash and cannot be shown again."
        )?;
    }
    Ok(())
}
