//! The built chain of layers, named through the builder's slots.

use std::fmt;

use tower_layer::{Layer, Stack};

use super::{ClassifierChoice, Slot};

/// The layer chain of a built stack, innermost first.
pub(super) type Chain<Fb, Ov, Rt, Hd, Br, Rl, Bh, At> =
    Stack<At, Stack<Bh, Stack<Rl, Stack<Br, Stack<Hd, Stack<Rt, Stack<Ov, Fb>>>>>>>;

/// The layers a builder's slots become, innermost first: what
/// [`ResilienceBuilder::build`](super::ResilienceBuilder::build) assembles, inside the
/// [`ResilienceLayer`](super::ResilienceLayer).
///
/// Its parameters are the builder's; it names each layer through its slot.
pub struct Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
{
    pub(super) chain:
        Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer>,
}

impl<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
{
    /// The layers, innermost first, as nested `tower_layer::Stack`s.
    #[allow(clippy::type_complexity)]
    pub fn get_ref(
        &self,
    ) -> &Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer> {
        &self.chain
    }
}

impl<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> Clone for Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
    Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer>: Clone,
{
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
        }
    }
}

impl<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> fmt::Debug
    for Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
    Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer>: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assembled").field("chain", &self.chain).finish()
    }
}

impl<S, C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At> Layer<S>
    for Assembled<C, Q, R, Fb, Ov, Rt, Hd, Br, Rl, Bh, At>
where
    C: ClassifierChoice<Q>,
    Fb: Slot<C::Classifier, Q, R>,
    Ov: Slot<C::Classifier, Q, R>,
    Rt: Slot<C::Classifier, Q, R>,
    Hd: Slot<C::Classifier, Q, R>,
    Br: Slot<C::Classifier, Q, R>,
    Rl: Slot<C::Classifier, Q, R>,
    Bh: Slot<C::Classifier, Q, R>,
    At: Slot<C::Classifier, Q, R>,
    Chain<Fb::Layer, Ov::Layer, Rt::Layer, Hd::Layer, Br::Layer, Rl::Layer, Bh::Layer, At::Layer>: Layer<S>,
{
    type Service = <Chain<
        Fb::Layer,
        Ov::Layer,
        Rt::Layer,
        Hd::Layer,
        Br::Layer,
        Rl::Layer,
        Bh::Layer,
        At::Layer,
    > as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.chain.layer(inner)
    }
}
