//! Faults injected into the AWS SDK's own request pipeline, the way a network or an overloaded service makes
//! them: a request refused before it reaches the service (nothing applied), or an answer lost after the service
//! applied the request (the SDK sees a 500 and retries it, as it would after a dropped connection). The service
//! itself is real: DynamoDB Local and moto apply every request that gets through.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// What happens to a request a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The service applies the request; its answer is replaced by a 500 (retryable), as if it never arrived.
    LoseAnswer,
    /// The request never leaves: the service applies nothing.
    Refuse,
}

#[derive(Debug, Clone)]
struct Rule {
    operation: &'static str,
    body_contains: Option<String>,
    fault: Fault,
    /// How many more requests this rule hits.
    remaining: usize,
}

/// Something the test does at the moment a request is about to leave (another request racing this one).
pub type Hook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

struct Before {
    body_contains: String,
    hook: Hook,
}

/// Faults at random: each write (and each `SendEmail`) is refused, or has its answer lost, with these chances in
/// a thousand, drawn from a seeded generator.
#[derive(Debug, Clone, Copy)]
struct Chances {
    state: u64,
    refuse: u64,
    lose: u64,
}

const WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "SendEmail",
];

/// A set of rules shared by the clients it is installed on; each rule hits the next `times` matching requests.
#[derive(Clone, Default)]
pub struct Faults {
    rules: Arc<Mutex<Vec<Rule>>>,
    hits: Arc<Mutex<Vec<String>>>,
    sent: Arc<Mutex<Vec<String>>>,
    hooks: Arc<Mutex<Vec<Before>>>,
    random: Arc<Mutex<Option<Chances>>>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("rules", &self.rules)
            .finish()
    }
}

impl Faults {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `times` requests of `operation` (e.g. "SendEmail", "UpdateItem") whose body contains
    /// `body_contains` (any body when `None`) meet `fault`.
    pub fn add(
        &self,
        operation: &'static str,
        body_contains: Option<&str>,
        fault: Fault,
        times: usize,
    ) {
        self.rules.lock().unwrap().push(Rule {
            operation,
            body_contains: body_contains.map(str::to_owned),
            fault,
            remaining: times,
        });
    }

    /// Runs `hook` (once, to completion) just before the next request of any operation whose body contains
    /// `body_contains` leaves. The test must run on tokio's multi-threaded runtime.
    pub fn before(&self, body_contains: &str, hook: Hook) {
        self.hooks.lock().unwrap().push(Before {
            body_contains: body_contains.to_owned(),
            hook,
        });
    }

    /// From now on, refuses each write and each send with a chance of `refuse` in a thousand and loses its answer
    /// with a chance of `lose` in a thousand (after the rules, which come first).
    pub fn at_random(&self, seed: u64, refuse: u64, lose: u64) {
        *self.random.lock().unwrap() = Some(Chances {
            state: seed,
            refuse,
            lose,
        });
    }

    /// Every fault injected so far, as "Operation: Fault".
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }

    /// The operation of every request that left through these faults' clients, oldest first; emptied.
    pub fn take_sent(&self) -> Vec<String> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }

    fn take(&self, operation: &str, body: &[u8]) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|rule| {
            rule.remaining > 0
                && rule.operation == operation
                && rule
                    .body_contains
                    .as_deref()
                    .is_none_or(|needle| body.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })?;
        rule.remaining -= 1;
        self.hits
            .lock()
            .unwrap()
            .push(format!("{operation}: {:?}", rule.fault));
        Some(rule.fault)
    }

    fn roll(&self, operation: &str) -> Option<Fault> {
        if !WRITES.contains(&operation) {
            return None;
        }
        let mut random = self.random.lock().unwrap();
        let chances = random.as_mut()?;
        // SplitMix64: small, seeded, good enough to pick faults.
        chances.state = chances.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = chances.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let draw = (z ^ (z >> 31)) % 1000;
        let fault = if draw < chances.refuse {
            Fault::Refuse
        } else if draw < chances.refuse + chances.lose {
            Fault::LoseAnswer
        } else {
            return None;
        };
        drop(random);
        self.hits
            .lock()
            .unwrap()
            .push(format!("{operation}: {fault:?} (random)"));
        Some(fault)
    }
}

/// Set on an attempt whose answer is to be lost.
#[derive(Debug, Clone)]
struct LoseThisAnswer;

impl Storable for LoseThisAnswer {
    type Storer = StoreReplace<Self>;
}

#[derive(Debug)]
struct Refused(&'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} refused by the test's fault injection", self.0)
    }
}

impl std::error::Error for Refused {}

impl Intercept for Faults {
    fn name(&self) -> &'static str {
        "TestFaults"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_owned())
            .unwrap_or_default();
        let body = context.request().body().bytes().unwrap_or_default();
        self.sent.lock().unwrap().push(operation.clone());
        let hook = {
            let mut hooks = self.hooks.lock().unwrap();
            let found = hooks.iter().position(|before| {
                body.windows(before.body_contains.len())
                    .any(|w| w == before.body_contains.as_bytes())
            });
            found.map(|i| hooks.remove(i))
        };
        if let Some(before) = hook {
            self.hits.lock().unwrap().push(format!("{operation}: hook"));
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on((before.hook)())
            });
        }
        match self
            .take(&operation, body)
            .or_else(|| self.roll(&operation))
        {
            Some(Fault::Refuse) => Err(Box::new(Refused("request"))),
            Some(Fault::LoseAnswer) => {
                cfg.interceptor_state().store_put(LoseThisAnswer);
                Ok(())
            }
            None => {
                cfg.interceptor_state().unset::<LoseThisAnswer>();
                Ok(())
            }
        }
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<LoseThisAnswer>().is_some() {
            let response = context.response_mut();
            *response.status_mut() = 500.try_into()?;
            *response.body_mut() = SdkBody::from(
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"answer lost (test fault)"}"#,
            );
        }
        Ok(())
    }
}
