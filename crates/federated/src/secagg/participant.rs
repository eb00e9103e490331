//! One client's whole part in a secure-aggregation round: the protocol's [`Client`] state
//! machine together with the update it carries, clipped, noised (when the round asks) and encoded
//! once at the start, then masked when the shares arrive. `websr fl-client` and the browser's
//! worker both drive it, so they prepare an update in exactly the same way; only the transport
//! (blocking HTTP, `fetch` from the page) differs.

use super::messages::{
    AdvertiseKeys, KeyDirectory, MaskedInput, RoutedShares, ShareKeys, UnmaskRequest,
    UnmaskResponse,
};
use super::{Client, SecAggError};
use crate::dp;
use crate::protocol::{ClientId, SecureAggregation};
use rand::CryptoRng;
use zeroize::Zeroizing;

/// A client's update on its way through one SecAgg session.
pub struct Participant {
    client: Client,
    keys: AdvertiseKeys,
    /// The encoded update until it is masked, then nothing (zeroed on drop).
    encoded: Option<Zeroizing<Vec<u32>>>,
}

impl Participant {
    /// Prepares `delta` (the trained weight change, tensor by tensor) for the announced session:
    /// clips it to the session's bound (a no-op when the client already clipped lower), adds this
    /// client's share of the noise, encodes it in fixed point and draws the session's key pairs.
    /// An encoding refused after noise is not retried with new noise (that would truncate the
    /// Gaussian): the client sits the round out.
    pub fn start(
        sa: &SecureAggregation,
        id: ClientId,
        mut delta: Vec<Vec<f32>>,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, SecAggError> {
        dp::clip(&mut delta, sa.clip_norm);
        if let Some(noise) = sa.noise()? {
            noise.add(&mut delta, rng);
        }
        let encoded = Zeroizing::new(sa.config.encoding.encode_tensors(&delta)?);
        delta.iter_mut().for_each(|t| t.fill(0.0));
        let (client, keys) = Client::new(sa.config.clone(), id, rng)?;
        Ok(Self {
            client,
            keys,
            encoded: Some(encoded),
        })
    }

    /// The session this participant belongs to (`SecAggConfig::round`).
    pub fn session(&self) -> u64 {
        self.client.config().round
    }

    /// Where the protocol stands, in words (for logs and the page).
    pub fn state(&self) -> &'static str {
        self.client.state()
    }

    /// The first message: this client's two public keys.
    pub fn keys(&self) -> &AdvertiseKeys {
        &self.keys
    }

    /// The second: the secret shares for the neighbours the server's key directory gives.
    pub fn share_keys(
        &mut self,
        directory: &KeyDirectory,
        rng: &mut impl CryptoRng,
    ) -> Result<ShareKeys, SecAggError> {
        self.client.share_keys(directory, rng)
    }

    /// The third: the masked update, once the shares routed to this client are in.
    pub fn masked_input(&mut self, routed: &RoutedShares) -> Result<MaskedInput, SecAggError> {
        let Some(encoded) = self.encoded.as_ref() else {
            return Err(SecAggError::OutOfOrder {
                call: "masked_input",
                state: "masked input sent",
            });
        };
        let masked = self.client.masked_input(routed, encoded)?;
        self.encoded = None;
        Ok(masked)
    }

    /// The last: the shares that let the server remove the survivors' self masks and the
    /// dropouts' pairwise masks.
    pub fn unmask(&mut self, request: &UnmaskRequest) -> Result<UnmaskResponse, SecAggError> {
        self.client.unmask(request)
    }
}
