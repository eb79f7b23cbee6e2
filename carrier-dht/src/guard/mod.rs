//! Protection before work: address tokens, the replay cache, per-IP rate limits and the
//! per-second budgets. Uses `wire`.

pub(crate) mod lru;
pub(crate) mod rate_limit;
pub(crate) mod replay;
pub(crate) mod token;
