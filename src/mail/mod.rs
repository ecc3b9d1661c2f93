//! The pure mail layer (no I/O): reading the mail we receive and building
//! the mail we send.
//!
//! - [`message`]: the one adapter over mail-parser (raw bytes in, our own
//!   `ParsedMessage` out).
//! - [`classify`]: is this mail from a robot, and where may an
//!   acknowledgement go?
//! - [`auth`]: is this mail really from a handler?
//! - [`compose`]: building the MIME of the mail we send (over lettre's
//!   builder).
//! - [`quote`]: a reply's own words, apart from the text it quotes.
//! - [`seal`]: PGP/MIME-encrypting a built message, subject protected.
//! - [`decrypt`]: reading mail as the team does, decrypted with the team
//!   key (over the `openpgp` adapter): the one way the pipeline reads mail.

pub mod auth;
pub mod classify;
pub mod compose;
pub mod decrypt;
pub mod message;
pub mod quote;
pub mod seal;
