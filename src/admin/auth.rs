//! Who may call the operator API: admin bearer tokens (read from files, like ingest tokens).
//! When tokens are configured they are required on every listener address, loopback too (in a
//! pod every sidecar reaches loopback); a loopback listener without tokens is open. The token's
//! name is the actor recorded with every operator action.

use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpRequest};

use super::{AdminError, AdminState};
use crate::config::TokenConfig;
use crate::ingest::auth::{presented_token, AuthError, CredentialError, IngestAuth};

/// The actor recorded for an unauthenticated call on a loopback-only listener.
pub const LOOPBACK_ACTOR: &str = "loopback";

/// The admin API's credentials and whether it may be called without one.
#[derive(Debug)]
pub struct AdminAuth {
    /// The configured admin tokens (the ingest token mechanism, without source limits).
    tokens: IngestAuth,
    /// The listener only accepts local connections: with no tokens configured, calls are
    /// allowed without one (startup refuses a non-loopback listener without tokens).
    loopback_only: bool,
}

impl AdminAuth {
    /// Loads the token files.
    pub fn load(tokens: &[TokenConfig], loopback_only: bool) -> Result<Self, CredentialError> {
        Ok(AdminAuth {
            tokens: IngestAuth::load(tokens)?,
            loopback_only,
        })
    }

    /// Whether calls need a token: tokens are configured, or the listener is not loopback.
    pub fn has_tokens(&self) -> bool {
        self.tokens.requires_credentials()
    }

    /// The actor for a presented token (or none). With tokens configured a token is required
    /// whatever the listener address.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<String, AuthError> {
        match self.tokens.authenticate(presented) {
            Ok(Some(token)) => Ok(token.name.clone()),
            // No tokens configured: only possible on loopback, or with --insecure-no-auth.
            Ok(None) if self.loopback_only => Ok(LOOPBACK_ACTOR.to_owned()),
            Ok(None) => Ok("unauthenticated".to_owned()),
            Err(error) => Err(error),
        }
    }
}

/// The authenticated caller of an operator API route; the first argument of every handler,
/// so an unauthenticated request is refused before anything else is looked at.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl FromRequest for Actor {
    type Error = AdminError;
    type Future = Ready<Result<Actor, AdminError>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let Some(state) = request.app_data::<web::Data<AdminState>>() else {
            // Only a wiring bug gets here; refuse rather than let a caller in.
            return ready(Err(AdminError::Unauthorized(AuthError::Missing)));
        };
        let authorization = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|value| value.as_bytes());
        // Only the header: a token in the query string would end up in access logs. A
        // malformed header is refused, never taken for a missing one.
        let result = presented_token(authorization, "")
            .and_then(|presented| state.auth.authenticate(presented.as_deref()));
        ready(result.map(Actor).map_err(AdminError::Unauthorized))
    }
}
