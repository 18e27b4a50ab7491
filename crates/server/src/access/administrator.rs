//! Who may run a project's tenants: its master key, or the organization key (which manages every project).
//! [`ProjectAdministrator`] resolves either into the project's master grant, so what such a route reads
//! or deletes goes through the same [`ScopedReader`] and [`EventDeleter`] as any other route; the audit
//! log names the actor (the master key's prefix, or `organization`).
//!
//! Design: the organization key is tried first, by its own check (it is not a project key and has no
//! grant); any other credential goes through [`auth::authorize`] with the master requirement, so its
//! refusals are answered and audited exactly as on a master-only route.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use keyhole_model::Grant;

use super::auth::{self, Requirement};
use super::{EventDeleter, EventEngines, ReadPurpose, ScopedReader};
use crate::AppState;
use crate::errors::ApiError;

/// The actor the audit log names for the organization key.
const ORGANIZATION_ACTOR: &str = "organization";

/// A caller holding the master key of the project in the path, or the organization key.
pub(crate) struct ProjectAdministrator {
    pub project_id: String,
    /// Who acts, as the audit log records it.
    pub actor: String,
    grant: Arc<Grant>,
    engines: EventEngines,
}

impl ProjectAdministrator {
    /// Reads of the project's events as its master key sees them.
    pub(crate) fn reader(&self) -> ScopedReader {
        ScopedReader::new(self.grant.clone(), ReadPurpose::Queries, &self.engines)
    }

    /// Deletes in the project as its master key makes them.
    pub(crate) fn deleter(&self) -> EventDeleter {
        EventDeleter::new(self.grant.clone(), &self.engines)
    }
}

impl FromRequestParts<AppState> for ProjectAdministrator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let project_id = auth::path_parameter(parts, "project_id")
            .await?
            .ok_or_else(|| {
                ApiError::internal("a project policy on a route without {project_id}")
            })?;
        if auth::check_organization_key(parts, state).await.is_ok() {
            let grant = state
                .meta
                .project_master_grant(&project_id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            return Ok(ProjectAdministrator {
                project_id,
                actor: ORGANIZATION_ACTOR.to_string(),
                grant,
                engines: state.events.clone(),
            });
        }
        let grant =
            auth::authorize(parts, state, &project_id, Requirement::MasterOrOrganization).await?;
        Ok(ProjectAdministrator {
            project_id,
            actor: grant.key_prefix().to_string(),
            grant,
            engines: state.events.clone(),
        })
    }
}
