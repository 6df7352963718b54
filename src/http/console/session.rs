//! Console sessions, kept in `console_sessions` so that any replica knows them. The cookie holds
//! 256 random bits; the table holds their SHA-256 only. Each session has its own CSRF token.

use crate::store::db::Db;
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::{AppState, error::Error};

/// The cookie's name.
pub const COOKIE: &str = "fw_session";
/// How long a session lasts.
const HOURS: i64 = 12;

/// 256 random bits, as hex (from the operating system's generator, through UUID v4).
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A signed-in session.
#[derive(Debug, Clone)]
pub struct Session {
    id_hash: String,
    /// The token every POST of this session carries in the form field `csrf`.
    pub csrf: String,
}

impl Session {
    /// Starts a session; returns its `Set-Cookie` value.
    pub async fn create(pool: &Db, https: bool) -> Result<String, sqlx::Error> {
        let value = random_hex();
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, csrf, expires_at) \
             VALUES ($1, $2, now() + make_interval(hours => $3))",
        )
        .bind(hash(&value))
        .bind(random_hex())
        .bind(HOURS as i32)
        .execute(pool)
        .await?;
        // Old sessions go when new ones come: no timer needed.
        sqlx::query("DELETE FROM console_sessions WHERE expires_at < now()")
            .execute(pool)
            .await?;
        let secure = if https { "; Secure" } else { "" };
        Ok(format!(
            "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            HOURS * 3600
        ))
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn cleared() -> String {
        format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    /// Refuses a POST whose `csrf` field is not this session's: 403.
    pub fn check_csrf(&self, presented: &str) -> Result<(), Error> {
        if bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "the form's csrf token is missing or wrong; reload the page and try again",
            ))
        }
    }

    /// Ends the session on every replica.
    pub async fn end(&self, pool: &Db) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(&self.id_hash)
            .execute(pool)
            .await?;
        Ok(())
    }
}

/// A console form with only its CSRF token (sign-out, replays).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    /// The session's token, from the form's hidden field `csrf`.
    #[serde(default)]
    pub csrf: String,
}

/// No session: back to the sign-in page (or 503 while the database is away).
pub enum NoSession {
    SignIn,
    Failed(Error),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/console/login").into_response(),
            Self::Failed(error) => error.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NoSession> {
        let value = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.to_string())
            .ok_or(NoSession::SignIn)?;
        let id_hash = hash(&value);
        let csrf: Option<String> = sqlx::query_scalar(
            "SELECT csrf FROM console_sessions WHERE id_hash = $1 AND expires_at > now()",
        )
        .bind(&id_hash)
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| NoSession::Failed(e.into()))?;
        let csrf = csrf.ok_or(NoSession::SignIn)?;
        Ok(Self { id_hash, csrf })
    }
}
