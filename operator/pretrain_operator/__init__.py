"""pretrain-operator's control plane: the kopf controller for the PretrainJob custom resource."""
