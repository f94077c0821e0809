"""Networks: segmenters (a factory over smp), the searchable generator, the discriminator."""
