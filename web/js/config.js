// The model cards and tuned settings shipped beside the weights (served under models/): every
// constant of the signal chain, the decoder and the clustering comes from these files.

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot load ${url} (HTTP ${response.status})`);
  return response.json();
}

/**
 * {agnostic, separation} cards, each with its decoder settings (and, for separation, clustering
 * settings) read from the files it names; `base` is the URL of the models folder.
 */
export async function loadConfig(base) {
  const folder = new URL(base, self.location.href);
  const load = async (name) => {
    const card = await fetchJson(new URL(`${name}.card.json`, folder));
    card.networkUrl = new URL(card.network, folder).href;
    card.energyUrl = new URL(card.energy, folder).href;
    card.decoder = await fetchJson(new URL(card.decoder_settings, folder));
    if (card.clustering_settings) card.clustering = await fetchJson(new URL(card.clustering_settings, folder));
    return card;
  };
  const [agnostic, separation] = await Promise.all([load("agnostic"), load("separation")]);
  return { agnostic, separation };
}
