//! The extractors of the routes, answering a bad request with the service's JSON error (axum's own
//! answer plain text): a query string or a path that cannot be read is a 400 with
//! `{"error", "code": "bad_request"}` naming what is wrong.

use axum::{
    extract::{FromRequestParts, rejection::PathRejection, rejection::QueryRejection},
    http::request::Parts,
};
use serde::de::DeserializeOwned;

use super::error::Error;

/// The query string, read into `T`; unreadable: 400 in JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(Error::BadRequest(
                format!("the query string cannot be read: {}", e.body_text()),
            )),
            Err(e) => Err(Error::BadRequest(e.body_text())),
        }
    }
}

/// The path's parameters, read into `T`; unreadable: 400 in JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(Error::BadRequest(
                format!("the path cannot be read: {}", e.body_text()),
            )),
            Err(e) => Err(Error::BadRequest(e.body_text())),
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`), read into `T`; unreadable: 400 in JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Form<T> {
    type Rejection = Error;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(Self(value)),
            Err(e) => Err(Error::BadRequest(format!(
                "the form cannot be read: {}",
                e.body_text()
            ))),
        }
    }
}
