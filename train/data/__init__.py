"""Training data: curated episodes, samples of (images, prompt, state, action chunk), transforms."""
