"""The contribution bot: a preview comment and a commit status on every pull request."""
