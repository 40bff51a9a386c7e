/* The firmware's per-layer hook: model.c calls EDGEC_LAYER_DONE(i) after each layer. */
void edgec_layer_done(int layer);
