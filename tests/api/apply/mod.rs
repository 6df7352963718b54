//! Applying stored events: the state rules at work and the worker.

mod transactions;
mod worker;
