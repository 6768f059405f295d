// sodium-native's raw binding, loaded once. The binding reports failures as return codes where
// the index.js wrapper would assert and throw; protocol code needs codes (a forged packet is a
// counted drop, not an exception) and the hot path cannot afford the wrapper's argument checks.
import binding from 'sodium-native/binding.js';

export const sodium = binding;
