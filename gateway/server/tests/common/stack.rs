//! A node and its admin API in-process on one data dir, as `gateway run` wires them: the entity
//! log opened on the dir, the node started on its entities, the admin API publishing to the node.
//! Stopped admin first, then node (the admin publishes to the node), also when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gateway::admin::{AdminOptions, AdminServer, Clock};
use gateway::entitylog::kafka::KafkaLogConfig;
use gateway::kafka::{KafkaConfig, Topics};
use gateway::node::Node;
use gateway::runtime::IoMode;
use gateway_model::entity::Secret;
use serde_json::Value;

/// How a [`Stack`] starts; [`StackOptions::new`] gives the usual values.
pub struct StackOptions<'a> {
    /// Node id (the entity log's too).
    pub id: &'a str,
    /// Worker cores of the node.
    pub cores: usize,
    /// The admin API's bearer token.
    pub token: &'a str,
    /// The cluster key; `None` generates one in the data dir.
    pub key_file: Option<&'a Path>,
    /// The admin's clock (rotations, event times), also the instant of the node's first entities.
    pub clock: Clock,
    /// How long a rotated-out secret stays accepted, ms.
    pub previous_secret_grace_ms: i64,
    /// Share the entity log through Kafka.
    pub kafka: Option<KafkaLogConfig>,
    /// With `kafka`: the node's usage goes to the same broker and topics too, and it follows the
    /// ledger's totals (`[events] sink = "kafka"`).
    pub usage_on_kafka: bool,
    /// Limits of the admin listener.
    pub http: gateway_httpd::Limits,
}

impl<'a> StackOptions<'a> {
    /// The system clock, no grace for rotated-out secrets, no Kafka, default admin limits.
    pub fn new(id: &'a str, cores: usize, token: &'a str) -> Self {
        Self {
            id,
            cores,
            token,
            key_file: None,
            clock: gateway::admin::system_clock(),
            previous_secret_grace_ms: 0,
            kafka: None,
            usage_on_kafka: false,
            http: gateway_httpd::Limits::default(),
        }
    }
}

/// The entity log of node `id` on a broker: `topics`, `partitions`, positions kept in `dir`.
pub fn kafka_entity_log(
    brokers: &str,
    topics: &Topics,
    partitions: u32,
    dir: &Path,
    id: &str,
) -> KafkaLogConfig {
    let mut kafka = KafkaConfig::new(brokers, dir);
    kafka.topics = topics.clone();
    kafka.partitions = partitions;
    KafkaLogConfig {
        kafka,
        data_dir: dir.to_owned(),
        node_id: id.to_owned(),
    }
}

/// A node with its admin API on a data dir (epoll, HTTP on 127.0.0.1:0, admin on 127.0.0.1:0).
pub struct Stack {
    node: Option<Node>,
    admin: Option<AdminServer>,
    token: String,
}

impl Stack {
    pub fn start(dir: &Path, options: StackOptions<'_>) -> Self {
        let log = gateway::admin::open_log(dir, options.id, options.key_file, 1000).unwrap();
        let entities = log.state().entities((options.clock)());
        let mut node_options =
            super::node_options(options.id, options.cores, IoMode::Epoll, Some(dir));
        if options.usage_on_kafka {
            node_options.kafka = options.kafka.as_ref().map(|k| k.kafka.clone());
        }
        let node = Node::start(&node_options, entities).unwrap();
        let admin = gateway::admin::start(
            AdminOptions {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                token: Secret::new(options.token),
                previous_secret_grace_ms: options.previous_secret_grace_ms,
                rotation_every: Duration::from_secs(3600),
                clock: options.clock,
                public_url: format!("http://{}", node.addr()),
                driver: node.driver().to_string(),
                metrics_public: false,
                kafka: options.kafka,
                http: options.http,
            },
            log,
            node.publisher(),
        )
        .unwrap();
        Self {
            node: Some(node),
            admin: Some(admin),
            token: options.token.to_owned(),
        }
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    pub fn admin(&self) -> &AdminServer {
        self.admin.as_ref().unwrap()
    }

    /// The data plane's address.
    pub fn data(&self) -> SocketAddr {
        self.node().addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin().addr()
    }

    /// One admin API request with the token: (status, JSON body or null).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        super::admin_call(self.admin_addr(), &self.token, method, path, body)
    }

    /// [`Stack::call`] that must answer 2xx: the answer.
    pub fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(method, path, Some(&body));
        assert!(
            (200..300).contains(&status),
            "{method} {path} {body}: {status} {answer}"
        );
        answer
    }

    /// Admin first, then the node; stopping again does nothing.
    pub fn stop(&mut self) {
        if let Some(a) = self.admin.take() {
            a.shutdown();
        }
        if let Some(n) = self.node.take() {
            n.shutdown();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
