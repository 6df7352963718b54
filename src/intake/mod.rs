//! A delivery comes in: which sender it is from ([`providers`]), whether its [`signature`] holds
//! over the raw body, what its [`envelope`] says (event id, type), and storing it once in the
//! [`inbox`] before it is acknowledged, byte for byte, so that its [`evidence`] can be checked
//! again later.

pub mod envelope;
pub mod evidence;
pub mod inbox;
pub mod providers;
pub mod signature;
