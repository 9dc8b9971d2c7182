//! The rules the linter checks: BuildKit's names, descriptions and documentation URLs.

/// A rule: its name, what it is about and where it is documented.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    pub url: &'static str,
    /// Off unless `experimental=` names it.
    pub experimental: bool,
}

macro_rules! rule {
    ($id:ident, $name:literal, $desc:literal, $slug:literal) => {
        rule!($id, $name, $desc, $slug, false);
    };
    ($id:ident, $name:literal, $desc:literal, $slug:literal, $exp:literal) => {
        pub const $id: Rule = Rule {
            name: $name,
            description: $desc,
            url: concat!("https://docs.docker.com/go/dockerfile/rule/", $slug, "/"),
            experimental: $exp,
        };
    };
}

rule!(
    STAGE_NAME_CASING,
    "StageNameCasing",
    "Stage names should be lowercase",
    "stage-name-casing"
);
rule!(
    FROM_AS_CASING,
    "FromAsCasing",
    "The 'as' keyword should match the case of the 'from' keyword",
    "from-as-casing"
);
rule!(
    NO_EMPTY_CONTINUATION,
    "NoEmptyContinuation",
    "Empty continuation lines will become errors in a future release",
    "no-empty-continuation"
);
rule!(
    CONSISTENT_INSTRUCTION_CASING,
    "ConsistentInstructionCasing",
    "All commands within the Dockerfile should use the same casing (either upper or lower)",
    "consistent-instruction-casing"
);
rule!(
    DUPLICATE_STAGE_NAME,
    "DuplicateStageName",
    "Stage names should be unique",
    "duplicate-stage-name"
);
rule!(
    RESERVED_STAGE_NAME,
    "ReservedStageName",
    "Reserved words should not be used as stage names",
    "reserved-stage-name"
);
rule!(
    JSON_ARGS_RECOMMENDED,
    "JSONArgsRecommended",
    "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    "json-args-recommended"
);
rule!(
    MAINTAINER_DEPRECATED,
    "MaintainerDeprecated",
    "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
    "maintainer-deprecated"
);
rule!(
    UNDEFINED_ARG_IN_FROM,
    "UndefinedArgInFrom",
    "FROM command must use declared ARGs",
    "undefined-arg-in-from"
);
rule!(
    WORKDIR_RELATIVE_PATH,
    "WorkdirRelativePath",
    "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    "workdir-relative-path"
);
rule!(
    UNDEFINED_VAR,
    "UndefinedVar",
    "Variables should be defined before their use",
    "undefined-var"
);
rule!(
    MULTIPLE_INSTRUCTIONS_DISALLOWED,
    "MultipleInstructionsDisallowed",
    "Multiple instructions of the same type should not be used in the same stage",
    "multiple-instructions-disallowed"
);
rule!(
    LEGACY_KEY_VALUE_FORMAT,
    "LegacyKeyValueFormat",
    "Legacy key/value format with whitespace separator should not be used",
    "legacy-key-value-format"
);
rule!(
    REDUNDANT_TARGET_PLATFORM,
    "RedundantTargetPlatform",
    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    "redundant-target-platform"
);
rule!(
    SECRETS_USED_IN_ARG_OR_ENV,
    "SecretsUsedInArgOrEnv",
    "Sensitive data should not be used in the ARG or ENV commands",
    "secrets-used-in-arg-or-env"
);
rule!(
    INVALID_DEFAULT_ARG_IN_FROM,
    "InvalidDefaultArgInFrom",
    "Default value for global ARG results in an empty or invalid base image name",
    "invalid-default-arg-in-from"
);
rule!(
    FROM_PLATFORM_FLAG_CONST_DISALLOWED,
    "FromPlatformFlagConstDisallowed",
    "FROM --platform flag should not use a constant value",
    "from-platform-flag-const-disallowed"
);
rule!(
    COPY_IGNORED_FILE,
    "CopyIgnoredFile",
    "Attempting to Copy file that is excluded by .dockerignore",
    "copy-ignored-file",
    true
);
