//! Kafka fan-out: relays the spool to a topic per webhook kind, advancing a durable
//! checkpoint only over records whose delivery Kafka confirmed.

pub mod status;

pub use status::KafkaStatus;
