//! The Spartakus wire contract: the report volunteers send, its validation, and the envelope the gateway queues.
