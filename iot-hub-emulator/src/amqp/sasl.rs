//! SASL as IoT Hub offers it: `MSSBCBS` (uamqp's "I will authenticate with CBS"), `ANONYMOUS`
//! and `PLAIN`. All three succeed; the CBS put-token is what authorises a connection's links.

use fe2o3_amqp::acceptor::sasl_acceptor::{SaslAcceptor, SaslServerFrame};
use fe2o3_amqp::types::primitives::{Array, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};

/// Offers the three mechanisms and accepts any of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct CbsSasl;

const MECHANISMS: [&str; 3] = ["MSSBCBS", "ANONYMOUS", "PLAIN"];

impl SaslAcceptor for CbsSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(
            MECHANISMS
                .iter()
                .map(|m| Symbol::from(*m))
                .collect::<Vec<_>>(),
        )
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        let code = if MECHANISMS.contains(&init.mechanism.as_str()) {
            SaslCode::Ok
        } else {
            SaslCode::Auth
        };
        SaslServerFrame::Outcome(SaslOutcome {
            code,
            additional_data: None,
        })
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        // No mechanism offered here sends a challenge, so a response is a protocol error.
        SaslServerFrame::Outcome(SaslOutcome {
            code: SaslCode::Sys,
            additional_data: None,
        })
    }
}
