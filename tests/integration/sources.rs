//! Local stand-ins for AniList's GraphQL API and RSS/Atom release feeds.
