//! Intake: every sender's scheme, and no acknowledged event lost under a burst.

mod evidence;
mod providers;
mod under_load;
