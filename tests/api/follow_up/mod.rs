//! After the fact: reconciliation by polling FLUID's API, and forwarding of status changes.

mod forward;
mod reconciliation;
